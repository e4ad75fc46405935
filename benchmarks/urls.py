"""The product's URLs plus the benchmark-only bare endpoint (``benchmarks.bare``)."""

from django.urls import path

from benchmarks.bare import BareWriteApi
from config.urls import urlpatterns as product_urlpatterns

urlpatterns = [*product_urlpatterns, path("bench/bare/", BareWriteApi.as_view(), name="bench-bare-write")]
