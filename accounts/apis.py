"""The API token endpoint: password, plus an authenticator code for users who must use MFA."""

from __future__ import annotations

from django.contrib.auth import authenticate
from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView

from accounts.exceptions import OtpCodeError
from accounts.models import MfaTokenGrant
from accounts.selectors import has_second_factor, mfa_required
from accounts.services.mfa import otp_code_verify
from config.api import StrictInputMixin


class AuthThrottle(AnonRateThrottle):
    scope = "auth"


class TokenInputSerializer(StrictInputMixin, serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False)
    otp_code = serializers.CharField(
        required=False,
        allow_blank=True,
        help_text="Current authenticator code (or a backup code); required for accounts with an authenticator.",
    )


class TokenOutputSerializer(serializers.Serializer):
    token = serializers.CharField()


class TokenObtainApi(APIView):
    """Exchange a user name, password and (for accounts with an authenticator) a TOTP code for an API token.

    Errors are 400 with code ``authorization`` whatever was wrong, as for a wrong password.

    Throttled, and counted by the brute-force lockout like the login page. Users who must use MFA but have not
    enrolled an authenticator get no token: they enrol in the browser first.
    """

    authentication_classes = []
    permission_classes = []
    throttle_classes = [AuthThrottle]

    @extend_schema(request=TokenInputSerializer, responses={200: TokenOutputSerializer})
    def post(self, request):
        data = TokenInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        # The plain Django request: django-axes flags a lockout on it for its middleware to answer.
        user = authenticate(
            request._request, username=data.validated_data["username"], password=data.validated_data["password"]
        )
        if user is None:
            raise serializers.ValidationError(
                "Unable to log in with the user name and password given.", code="authorization"
            )
        device = None
        if has_second_factor(user):
            try:
                device = otp_code_verify(user, data.validated_data.get("otp_code", ""))
            except OtpCodeError as error:
                raise serializers.ValidationError({"otp_code": error.message}, code="authorization") from error
        elif mfa_required(user):
            raise serializers.ValidationError(
                "This account needs an authenticator: log in in the browser to enrol one.", code="authorization"
            )
        with transaction.atomic():
            token, _ = Token.objects.get_or_create(user=user)
            if device is not None:
                MfaTokenGrant.objects.update_or_create(
                    token=token, defaults={"device_persistent_id": device.persistent_id}
                )
        return Response({"token": token.key}, status=status.HTTP_200_OK)
