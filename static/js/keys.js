// The API keys page: copy a new key in one click; ask before revoking one.
(function () {
  "use strict";
  var copy = document.getElementById("copy-key");
  if (copy) {
    copy.addEventListener("click", function () {
      var field = document.getElementById(copy.dataset.target);
      field.select();
      var done = function () { document.getElementById("copy-done").hidden = false; };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(field.value).then(done, function () { document.execCommand("copy"); done(); });
      } else {
        document.execCommand("copy");
        done();
      }
    });
  }
  Array.prototype.forEach.call(document.querySelectorAll("form.revoke"), function (form) {
    form.addEventListener("submit", function (e) {
      var ok = window.confirm("Revoke the key “" + form.dataset.name + "”? Programs using it will stop working at once.");
      if (!ok) e.preventDefault();
    });
  });
})();
