// Live progress of an analysis run: polls the run's status endpoint and reloads the page when it ends.
(function () {
  "use strict";
  var box = document.getElementById("run-progress");
  if (!box || box.dataset.status === "succeeded" || box.dataset.status === "failed") { return; }
  var bar = document.getElementById("run-bar");
  var percent = document.getElementById("run-percent");
  var step = document.getElementById("run-step");
  var status = document.getElementById("run-status");
  function poll() {
    fetch(box.dataset.statusUrl, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) { return response.json(); })
      .then(function (data) {
        bar.value = data.progress;
        percent.textContent = data.progress + "%";
        step.textContent = data.step;
        status.textContent = data.status;
        if (data.status === "succeeded" || data.status === "failed") { window.location.reload(); }
        else { window.setTimeout(poll, 1500); }
      })
      .catch(function () { window.setTimeout(poll, 5000); });
  }
  window.setTimeout(poll, 1000);
}());
