// Keys on the review pages: j / k move between documents, a label's key picks it for the
// current document, r goes to the reason (Enter there decides), o opens the document's
// page. The pages work without this file (plain forms).
(function () {
  "use strict";
  let current = 0;

  function cards() {
    return Array.from(document.querySelectorAll(".review-item"));
  }

  function show(index) {
    const all = cards();
    if (!all.length) return null;
    current = Math.max(0, Math.min(index, all.length - 1));
    all.forEach(function (card, i) {
      card.classList.toggle("current", i === current);
    });
    all[current].scrollIntoView({ block: "nearest" });
    return all[current];
  }

  function typing(target) {
    const tag = (target.tagName || "").toLowerCase();
    return tag === "input" && target.type !== "checkbox" && target.type !== "radio" ||
      tag === "textarea" || tag === "select" || target.isContentEditable;
  }

  document.addEventListener("DOMContentLoaded", function () { show(0); });
  // A decision swaps its card: keep the same position marked.
  document.addEventListener("htmx:afterSwap", function () { show(current); });

  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && typing(event.target)) {
      event.target.blur();
      return;
    }
    if (typing(event.target) || event.ctrlKey || event.metaKey || event.altKey) return;
    const card = show(current);
    if (!card) return;
    if (event.key === "j") { event.preventDefault(); show(current + 1); return; }
    if (event.key === "k") { event.preventDefault(); show(current - 1); return; }
    if (event.key === "r") {
      const reason = card.querySelector("input[name=reason]");
      if (reason) { event.preventDefault(); reason.focus(); }
      return;
    }
    if (event.key === "o") {
      const link = card.querySelector("a.document-link");
      if (link) { event.preventDefault(); window.location.assign(link.href); }
      return;
    }
    const choice = Array.from(card.querySelectorAll("[data-hotkey]")).find(function (el) {
      return el.dataset.hotkey && el.dataset.hotkey.toLowerCase() === event.key.toLowerCase();
    });
    if (choice) {
      event.preventDefault();
      const input = choice.querySelector("input");
      input.checked = input.type === "radio" ? true : !input.checked;
    }
  });
})();
