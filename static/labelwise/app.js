// Behaviour every page shares, kept out of the markup: the Content-Security-Policy runs no
// inline script or on* handler (config/csp.py).
(function () {
  "use strict";
  // <select data-autosubmit>: picking an option submits its form (a plain GET form, so the
  // page works without this file too: it has a <noscript> button).
  document.addEventListener("change", function (event) {
    const field = event.target;
    if (field && field.matches && field.matches("[data-autosubmit]") && field.form) {
      field.form.requestSubmit ? field.form.requestSubmit() : field.form.submit();
    }
  });
})();
