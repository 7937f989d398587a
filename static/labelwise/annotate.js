// Keyboard-first labelling. The page works without this file (plain forms); with it, every
// action has a key, and keys are ignored while a request is in flight so a double press
// never answers the next document by accident.
(function () {
  "use strict";
  let busy = false;
  let shownAt = performance.now();

  document.addEventListener("htmx:beforeRequest", function () { busy = true; });
  document.addEventListener("htmx:afterRequest", function () { busy = false; });
  document.addEventListener("htmx:afterSwap", function () {
    busy = false;
    shownAt = performance.now();
  });
  // Record how long the annotator looked at the text (labels per hour on the dashboard).
  // htmx 2 hands the request's fields over as FormData (event.detail.formData): the `in`
  // operator never sees a FormData field, so ask it with has()/set().
  document.addEventListener("htmx:configRequest", function (event) {
    const fields = event.detail.formData || event.detail.parameters;
    const value = String(Math.round(performance.now() - shownAt));
    if (!fields) return;
    if (typeof fields.has === "function") {
      if (fields.has("duration_ms")) fields.set("duration_ms", value);
    } else if ("duration_ms" in fields) {
      fields.duration_ms = value;
    }
  });

  function typing(target) {
    const tag = (target.tagName || "").toLowerCase();
    return tag === "input" && target.type !== "checkbox" || tag === "textarea" ||
      tag === "select" || target.isContentEditable;
  }

  function labelFor(key) {
    const item = document.getElementById("item");
    if (!item) return null;
    return Array.from(item.querySelectorAll("[data-hotkey]")).find(function (el) {
      return el.dataset.hotkey && el.dataset.hotkey.toLowerCase() === key.toLowerCase();
    }) || null;
  }

  function submit(form, submitter) {
    if (!form || busy) return;
    busy = true;
    // A form swapped in a moment ago may not be wired by htmx yet (it does that as the
    // swap settles): submitted now, it would post as a plain form and reload the page,
    // losing what the swap showed (an undone answer shown selected). Wire it first;
    // htmx.process is a no-op on a form it already handles.
    if (window.htmx) window.htmx.process(form);
    // A click (not requestSubmit) so htmx sees which label button submitted the form.
    if (submitter) submitter.click(); else form.requestSubmit();
  }

  document.addEventListener("keydown", function (event) {
    const flagBox = document.getElementById("flag-box");
    if (event.key === "Escape" && flagBox && flagBox.open) {
      flagBox.open = false;
      event.target.blur && event.target.blur();
      return;
    }
    if (event.target.id === "flag-comment" && event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      submit(event.target.form);
      return;
    }
    if (typing(event.target) || event.ctrlKey || event.metaKey || event.altKey) return;
    const item = document.getElementById("item");
    if (!item) return;
    // The project's task says what a label key does: "toggle" it, or "submit" it at once.
    const toggles = item.dataset.keys === "toggle";
    const label = labelFor(event.key);
    if (label) {
      event.preventDefault();
      if (toggles) {
        const box = label.querySelector("input[type=checkbox]");
        box.checked = !box.checked;
        label.setAttribute("aria-pressed", box.checked ? "true" : "false");
      } else {
        submit(document.getElementById("label-form"), label);
      }
      return;
    }
    // The text scrolls inside its box: the reading keys move it, not the page.
    const text = document.getElementById("doc-text");
    const pageStep = text ? Math.max(text.clientHeight - 40, 40) : 0;
    const scrollBy = {
      PageDown: pageStep, " ": event.shiftKey ? -pageStep : pageStep, PageUp: -pageStep,
      ArrowDown: 40, ArrowUp: -40,
    };
    // (Space on a focused button presses it, as it should.)
    if (text && event.key in scrollBy && !(event.key === " " && event.target.tagName === "BUTTON")) {
      event.preventDefault();
      text.scrollBy({ top: scrollBy[event.key] });
      return;
    }
    if (text && (event.key === "Home" || event.key === "End")) {
      event.preventDefault();
      text.scrollTop = event.key === "Home" ? 0 : text.scrollHeight;
      return;
    }
    switch (event.key) {
      case "Enter": {
        const form = document.getElementById("label-form");
        if (toggles && form) {
          event.preventDefault();
          submit(form);
        } else if (form && event.target.tagName !== "BUTTON") {
          // After an undo the answer taken back is shown pressed: Enter keeps it.
          const previous = form.querySelector("[data-previous]");
          if (previous) {
            event.preventDefault();
            submit(form, previous);
          }
        }
        break;
      }
      case "a": {
        const accept = document.getElementById("accept-form");
        if (accept) {
          event.preventDefault();
          submit(accept);
        }
        break;
      }
      case "s":
        event.preventDefault();
        submit(document.getElementById("skip") && document.getElementById("skip").form);
        break;
      case "u":
        event.preventDefault();
        submit(document.getElementById("undo") && document.getElementById("undo").form);
        break;
      case "f":
        if (flagBox) {
          event.preventDefault();
          flagBox.open = true;
          document.getElementById("flag-comment").focus();
        }
        break;
      case "g": {
        const side = document.getElementById("side-panel");
        if (side) side.hidden = !side.hidden;
        break;
      }
    }
  });

  // Clicking a multi-label toggle keeps its pressed state in step with the checkbox.
  document.addEventListener("change", function (event) {
    const label = event.target.closest && event.target.closest("[data-hotkey]");
    if (label && event.target.type === "checkbox") {
      label.setAttribute("aria-pressed", event.target.checked ? "true" : "false");
    }
  });
})();
