// chatsite: the little the chat page needs beyond htmx. Enter to send, copy buttons,
// keeping the newest message in view, choice tabs on narrow screens, the sidebar drawer.
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  const scroller = () => document.getElementById("chat-scroll");
  // Follow new messages only while the reader is at the bottom (not reading older ones).
  let stickToBottom = true;

  function nearBottom(el) {
    return el.scrollHeight - el.scrollTop - el.clientHeight < 80;
  }

  function scrollToNewest() {
    const el = scroller();
    if (el) el.scrollTop = el.scrollHeight;
  }

  function autogrow(textarea) {
    textarea.style.height = "auto";
    textarea.style.height = textarea.scrollHeight + 2 + "px";
  }

  // --- Enter (or Ctrl/Cmd+Enter) sends, Shift+Enter adds a line (not while an input
  // method is composing). ---
  document.addEventListener("keydown", function (event) {
    const target = event.target;
    if (!(target instanceof HTMLTextAreaElement) || !target.hasAttribute("data-enter-sends")) return;
    if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.keyCode === 229) return;
    if (event.altKey) return;
    event.preventDefault();
    const form = target.form;
    if (!form || !target.value.trim()) return;
    const button = form.querySelector("button[type=submit]");
    if (button && button.disabled) return;
    stickToBottom = true;
    form.requestSubmit(button || undefined);
  });

  document.addEventListener("input", function (event) {
    if (event.target instanceof HTMLTextAreaElement && event.target.hasAttribute("data-enter-sends")) {
      autogrow(event.target);
    }
  });

  document.addEventListener("submit", function (event) {
    if (event.target.id === "composer") stickToBottom = true;
  });

  // --- Copy buttons on code blocks. ---
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
    // Plain http on a LAN address has no Clipboard API: fall back to a hidden selection.
    return new Promise(function (resolve, reject) {
      const area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.style.position = "fixed";
      area.style.opacity = "0";
      document.body.appendChild(area);
      area.select();
      const ok = document.execCommand("copy");
      area.remove();
      ok ? resolve() : reject(new Error("copy failed"));
    });
  }

  document.addEventListener("click", function (event) {
    const button = event.target.closest(".copy-code");
    if (!button) return;
    const code = button.closest(".codeblock").querySelector("pre code");
    const label = button.dataset.label || button.textContent;
    button.dataset.label = label;
    copyText(code.innerText).then(
      function () { button.textContent = document.body.dataset.copiedText || "Copied"; },
      function () { button.textContent = document.body.dataset.copyFailedText || "Copy failed"; }
    ).finally(function () {
      setTimeout(function () { button.textContent = label; }, 1500);
    });
  });

  // --- Copy a whole message as it was written (a reply's Markdown): its link goes to
  // the text itself, which is where it leads without script. ---
  function copiedFeedback(el, ok) {
    const label = el;
    const text = label.dataset.label || label.textContent;
    label.dataset.label = text;
    label.textContent = ok ? document.body.dataset.copiedText || "Copied" : document.body.dataset.copyFailedText || "Copy failed";
    setTimeout(function () { label.textContent = text; }, 1500);
  }

  document.addEventListener("click", function (event) {
    const link = event.target.closest("a.action-copy");
    if (!link) return;
    event.preventDefault();
    const text = fetch(link.href, { credentials: "same-origin" }).then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.text();
    });
    let copied;
    if (navigator.clipboard && window.isSecureContext && window.ClipboardItem) {
      // Handing the clipboard a promise keeps the click's permission while the text loads.
      copied = navigator.clipboard.write([new ClipboardItem({
        "text/plain": text.then(function (t) { return new Blob([t], { type: "text/plain" }); }),
      })]);
    } else {
      copied = text.then(copyText);
    }
    copied.then(function () { copiedFeedback(link, true); }, function () { copiedFeedback(link, false); });
  });

  // A field's value (a new API key) onto the clipboard.
  document.addEventListener("click", function (event) {
    const button = event.target.closest("button.copy-value");
    if (!button) return;
    const field = document.getElementById(button.getAttribute("aria-controls"));
    copyText(field.value).then(
      function () { copiedFeedback(button, true); },
      function () { field.select(); copiedFeedback(button, false); }
    );
  });

  // Edit: the message's edit form in its place (the link opens the page with it, without
  // script).
  document.addEventListener("click", function (event) {
    const link = event.target.closest("a.action-edit");
    if (!link || !window.htmx) return;
    event.preventDefault();
    htmx.ajax("GET", link.href, { target: link.closest("li"), swap: "outerHTML" });
  });

  // A version button at the first or last version does nothing (it stays focusable, so
  // the focus stays where it was after a switch).
  document.addEventListener("click", function (event) {
    const step = event.target.closest(".version-step[aria-disabled=true]");
    if (step) event.preventDefault();
  }, true);

  // --- Choice tabs (shown by CSS only when the reply column is narrow). ---
  function activateChoice(tab, focus) {
    const choices = tab.closest("[data-choices]");
    const index = tab.dataset.index;
    choices.querySelectorAll("[role=tab]").forEach(function (t) {
      const on = t === tab;
      t.setAttribute("aria-selected", on ? "true" : "false");
      t.tabIndex = on ? 0 : -1;
    });
    choices.querySelectorAll(".choice").forEach(function (c) {
      c.classList.toggle("is-active", c.dataset.index === index);
    });
    choices.dataset.active = index;
    if (focus) tab.focus();
  }

  document.addEventListener("click", function (event) {
    const tab = event.target.closest(".choice-tabs [role=tab]");
    if (tab) activateChoice(tab, false);
  });

  document.addEventListener("keydown", function (event) {
    const tab = event.target.closest && event.target.closest(".choice-tabs [role=tab]");
    if (!tab || (event.key !== "ArrowRight" && event.key !== "ArrowLeft")) return;
    const tabs = Array.from(tab.parentElement.querySelectorAll("[role=tab]"));
    const step = event.key === "ArrowRight" ? 1 : -1;
    const next = tabs[(tabs.indexOf(tab) + step + tabs.length) % tabs.length];
    event.preventDefault();
    activateChoice(next, true);
  });

  function initChoices(root) {
    root.querySelectorAll("[data-choices]").forEach(function (choices) {
      const active = choices.dataset.active;
      choices.querySelectorAll(".choice").forEach(function (c) {
        c.classList.toggle("is-active", c.dataset.index === active);
      });
    });
  }

  // --- Sidebar drawer on narrow screens. ---
  function setSidebar(open) {
    document.body.classList.toggle("sidebar-open", open);
    document.querySelectorAll(".sidebar-toggle").forEach(function (b) {
      b.setAttribute("aria-expanded", open ? "true" : "false");
    });
    if (open) {
      const first = document.querySelector("#sidebar a, #sidebar button");
      if (first) first.focus();
    }
  }

  document.addEventListener("click", function (event) {
    if (event.target.closest(".sidebar-toggle")) {
      setSidebar(!document.body.classList.contains("sidebar-open"));
    } else if (document.body.classList.contains("sidebar-open") && !event.target.closest("#sidebar")) {
      setSidebar(false);
    }
    // A click outside an open menu closes it.
    document.querySelectorAll("details.menu[open]").forEach(function (menu) {
      if (!menu.contains(event.target)) menu.removeAttribute("open");
    });
  });

  // Escape closes what is open (the drawer, a menu); with nothing open, it stops the
  // reply being written.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape" || event.isComposing) return;
    let closed = false;
    if (document.body.classList.contains("sidebar-open")) {
      setSidebar(false);
      const toggle = document.querySelector(".sidebar-toggle");
      if (toggle) toggle.focus();
      closed = true;
    }
    document.querySelectorAll("details.menu[open]").forEach(function (menu) {
      const hadFocus = menu.contains(document.activeElement) || document.activeElement === document.body;
      menu.removeAttribute("open");
      if (hadFocus) menu.querySelector("summary").focus();
      closed = true;
    });
    const stop = !closed && document.querySelector("#messages .reply-pending .button-stop");
    if (stop && !stop.disabled) {
      event.preventDefault();
      stop.click();
    }
  });

  // "/" focuses the search box (not while typing in a field).
  document.addEventListener("keydown", function (event) {
    if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
    const target = event.target;
    if (target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement ||
        target instanceof HTMLSelectElement || (target && target.isContentEditable)) return;
    const box = document.querySelector("[data-search-shortcut]");
    if (!box) return;
    event.preventDefault();
    // On a narrow screen the sidebar is a closed drawer: open it first.
    const drawer = box.closest(".sidebar");
    if (drawer && getComputedStyle(drawer).visibility === "hidden") setSidebar(true);
    box.focus();
    box.select();
  });

  // Ctrl/Cmd+Shift+O starts a new chat, from anywhere on a page that offers one.
  document.addEventListener("keydown", function (event) {
    if (!(event.ctrlKey || event.metaKey) || !event.shiftKey || event.altKey) return;
    if (event.key.toLowerCase() !== "o") return;
    const form = document.querySelector(".new-chat-form");
    if (!form) return;
    event.preventDefault();
    form.requestSubmit();
  });

  // --- Keep the newest message in view; offer a way back to it when scrolled up. ---
  function syncJump() {
    const el = scroller();
    const button = document.querySelector(".jump-latest");
    if (el && button) button.hidden = nearBottom(el);
  }

  document.addEventListener("scroll", function (event) {
    if (event.target.id !== "chat-scroll") return;
    stickToBottom = nearBottom(event.target);
    syncJump();
  }, true);

  document.addEventListener("click", function (event) {
    if (!event.target.closest(".jump-latest")) return;
    stickToBottom = true;
    const el = scroller();
    if (el) el.scrollTo({ top: el.scrollHeight, behavior: "smooth" });
    const box = document.querySelector("#composer textarea");
    if (box) box.focus({ preventScroll: true });
  });

  // --- When each message came, as "5 minutes ago", and the full date on hover, both in
  // the page's language (the server writes a plain 2026-12-02 21:51 for pages without
  // script). ---
  const UNITS = [["year", 31536000], ["month", 2592000], ["week", 604800], ["day", 86400],
                 ["hour", 3600], ["minute", 60]];
  // The page's language for dates and numbers; without Intl the server's text stays.
  let relative = null, full = null, plurals = null, numbers = null;
  try {
    const lang = document.documentElement.lang || undefined;
    relative = new Intl.RelativeTimeFormat(lang, { numeric: "auto" });
    full = new Intl.DateTimeFormat(lang, { dateStyle: "long", timeStyle: "short" });
    plurals = new Intl.PluralRules(lang);
    numbers = new Intl.NumberFormat(lang);
  } catch (error) { relative = plurals = null; }

  function ago(date) {
    const seconds = (date.getTime() - Date.now()) / 1000;
    for (const [unit, size] of UNITS) {
      if (Math.abs(seconds) >= size) return relative.format(Math.round(seconds / size), unit);
    }
    return relative.format(0, "second");  // "now"
  }

  // Every stamp each half minute; between those, only the ones just added to the page.
  function refreshStamps(onlyNew) {
    if (!relative) return;
    const selector = onlyNew ? "time.stamp[datetime]:not([data-shown])" : "time.stamp[datetime]";
    document.querySelectorAll(selector).forEach(function (stamp) {
      const date = new Date(stamp.getAttribute("datetime"));
      if (isNaN(date)) return;
      stamp.textContent = ago(date);
      if (!stamp.dataset.shown) stamp.title = full.format(date);
      stamp.dataset.shown = "relative";
    });
  }
  setInterval(function () { refreshStamps(false); }, 30000);

  // A reply's tokens: the page sends the numbers and, once, the words around them.
  function showTokens() {
    const texts = document.getElementById("messages");
    if (!plurals || !texts || !texts.dataset.tokenOther) return;
    texts.querySelectorAll(".tokens[data-prompt]:not([data-shown])").forEach(function (el) {
      const prompt = Number(el.dataset.prompt), completion = Number(el.dataset.completion);
      const total = prompt + completion;
      const words = plurals.select(total) === "one" ? texts.dataset.tokenOne : texts.dataset.tokenOther;
      el.textContent = words.replace("%(total)s", numbers.format(total));
      el.title = texts.dataset.tokenDetail.replace("%(prompt)s", numbers.format(prompt))
        .replace("%(completion)s", numbers.format(completion));
      el.dataset.shown = "words";
    });
  }

  document.addEventListener("htmx:afterSettle", function (event) {
    initChoices(event.detail.elt.parentElement || document);
    if (stickToBottom) scrollToNewest();
    document.querySelectorAll("textarea[data-enter-sends]").forEach(autogrow);
  });
  document.addEventListener("htmx:oobAfterSwap", function () {
    if (stickToBottom) scrollToNewest();
  });

  // --- Live replies: follow the stream; poll for the text itself if SSE cannot connect. ---
  // A choice's text arrives as plain text: `text-N` adds a piece, `reset-N` is the whole
  // text so far (a late reader's first, or a retry starting again). Added as text nodes,
  // never parsed as HTML; the `done` event then swaps in the rendered reply.
  // A reasoning model's text starts with its reasoning in a <think> block (the worker
  // puts reasoning sent apart there too): it goes to the "Thinking" section before the
  // choice, open while only reasoning has come, closed once the answer begins.
  const THINK_OPEN = "<think>", THINK_CLOSE = "</think>";
  const liveTexts = new WeakMap();  // each choice's whole text so far, and what it shows

  function splitThinking(text) {
    if (!text.startsWith(THINK_OPEN)) return { reasoning: "", answer: text };
    const rest = text.slice(THINK_OPEN.length);
    const end = rest.indexOf(THINK_CLOSE);
    if (end < 0) return { reasoning: rest, answer: "" };
    return { reasoning: rest.slice(0, end), answer: rest.slice(end + THINK_CLOSE.length) };
  }

  function thinkingOf(choice) {
    const section = choice.previousElementSibling;
    return section && section.matches("details.reasoning") ? section : null;
  }

  function liveTextOf(choice) {
    // The page as the server wrote it (before this stream's first event).
    const section = thinkingOf(choice);
    const reasoning = section && !section.hidden ? section.querySelector(".reasoning-text").textContent : "";
    const answer = choice.textContent;
    const text = reasoning ? THINK_OPEN + reasoning + (answer ? THINK_CLOSE + answer : "") : answer;
    return { text: text, reasoning: reasoning, answer: answer };
  }

  function showLive(choice, text) {
    const shown = liveTexts.get(choice) || liveTextOf(choice);
    const parts = splitThinking(text);
    if (parts.answer !== shown.answer) {
      // Pieces are added as text nodes, never parsed as HTML.
      if (shown.answer && parts.answer.startsWith(shown.answer)) choice.append(parts.answer.slice(shown.answer.length));
      else choice.textContent = parts.answer;
    }
    const section = thinkingOf(choice);
    if (section && parts.reasoning !== shown.reasoning) {
      const box = section.querySelector(".reasoning-text");
      if (shown.reasoning && parts.reasoning.startsWith(shown.reasoning)) box.append(parts.reasoning.slice(shown.reasoning.length));
      else box.textContent = parts.reasoning;
    }
    if (section) {
      if (section.hidden !== !parts.reasoning) section.hidden = !parts.reasoning;
      if (!parts.reasoning) {
        if (!section.open) section.open = true;  // a retry that starts again may think again
        delete section.dataset.answered;
      } else if (parts.answer && !section.dataset.answered) {
        // Once: a reader who opens it again while the answer comes keeps it open.
        section.open = false;
        section.dataset.answered = "true";
      }
    }
    liveTexts.set(choice, { text: text, reasoning: parts.reasoning, answer: parts.answer });
  }

  document.addEventListener("htmx:sseBeforeMessage", function (event) {
    const choice = event.target;
    const message = event.detail;
    if (!choice.hasAttribute || !choice.hasAttribute("data-choice") || !message || !message.type) return;
    event.preventDefault();
    if (message.type.startsWith("reset-")) showLive(choice, message.data);
    else showLive(choice, (liveTexts.get(choice) || liveTextOf(choice)).text + message.data);
    if (stickToBottom) scrollToNewest();
  });
  document.addEventListener("htmx:sseMessage", function () {
    if (stickToBottom) scrollToNewest();
  });
  document.addEventListener("htmx:sseError", function (event) {
    const pending = event.target.closest && event.target.closest(".reply-pending");
    if (pending) pending.dataset.sseFailed = "true";
  });
  document.addEventListener("htmx:beforeRequest", function (event) {
    // While the event stream works it brings everything: skip the fallback poll.
    const elt = event.detail.elt;
    if (elt.classList && elt.classList.contains("reply-pending") && window.EventSource
        && !elt.dataset.sseFailed && event.detail.requestConfig.verb === "get") {
      event.preventDefault();
    }
  });
  document.addEventListener("htmx:configRequest", function (event) {
    // Without a working event stream the poll must bring the growing text along.
    const pending = event.detail.elt.closest && event.detail.elt.closest(".reply-pending");
    if (pending && (pending.dataset.sseFailed || !window.EventSource)) delete event.detail.parameters.live;
  });

  // --- A send the server refused before any view ran (too large, 413) or without its
  // database (503): say why beside the composer; htmx swaps nothing on an error, so the
  // text stays in it. ---
  document.addEventListener("htmx:responseError", function (event) {
    const form = event.detail.elt.closest && event.detail.elt.closest("#composer");
    const xhr = event.detail.xhr;
    if (!form || !xhr || (xhr.status !== 413 && xhr.status !== 503)) return;
    let box = form.querySelector(".field-error");
    if (!box) {
      box = document.createElement("div");
      box.className = "field-error";
      box.id = "composer-error";
      box.setAttribute("role", "alert");
      form.querySelector(".composer-box").after(box);
    }
    const line = document.createElement("p");
    line.textContent = xhr.responseText;
    box.replaceChildren(line);
    const textarea = form.querySelector("textarea");
    textarea.setAttribute("aria-invalid", "true");
    textarea.setAttribute("aria-describedby", "composer-error");
  });

  // --- While a reply is being written the server takes no new message: Send waits, and
  // once the reply ends Send comes back and a "wait for the reply" error goes away. ---
  function syncComposer() {
    const composer = document.getElementById("composer");
    if (!composer || !composer.hasAttribute("hx-post")) return;
    const busy = !!document.querySelector("#messages .reply-pending");
    composer.dataset.busy = busy ? "true" : "false";
    const button = composer.querySelector("button[type=submit]");
    // During the send itself htmx holds the button (hx-disabled-elt) and gives it back.
    if (button && !composer.classList.contains("htmx-request")) {
      button.disabled = busy;
      if (busy) button.title = composer.dataset.busyText || "";
      else button.removeAttribute("title");
    }
    const error = busy ? null : composer.querySelector("[data-clears-when-idle]");
    if (error) {
      error.remove();
      composer.querySelector(".composer-box").classList.remove("field-invalid");
      const textarea = composer.querySelector("textarea");
      textarea.removeAttribute("aria-invalid");
      textarea.setAttribute("aria-describedby", "composer-hint");
    }
  }

  let syncQueued = false;
  new MutationObserver(function () {
    if (syncQueued) return;
    syncQueued = true;
    requestAnimationFrame(function () { syncQueued = false; syncComposer(); refreshStamps(true); showTokens(); syncJump(); });
  // Classes too: htmx settles a swapped-in reply with the old element's classes for a
  // moment, so the ended reply is `.reply-pending` until its own class is put back.
  }).observe(document.documentElement, {
    childList: true, subtree: true, attributes: true, attributeFilter: ["class"],
  });
  // htmx gives the Send button back (hx-disabled-elt) after the request, not by a class.
  document.addEventListener("htmx:afterRequest", syncComposer);

  // --- A language applies as soon as it is picked (the form's Change button is for pages
  // without script). ---
  document.addEventListener("change", function (event) {
    if (event.target.id === "site-language") event.target.form.requestSubmit();
  });

  // --- The theme applies as soon as it is picked; the server keeps it (a cookie). ---
  document.addEventListener("change", function (event) {
    if (event.target.id !== "site-theme") return;
    const form = event.target.form;
    const theme = event.target.value;
    if (theme === "system") document.documentElement.removeAttribute("data-theme");
    else document.documentElement.dataset.theme = theme;
    fetch(form.action, { method: "POST", body: new FormData(form), headers: { "HX-Request": "true" },
                         credentials: "same-origin" });
  });

  function init() {
    syncComposer();
    refreshStamps(false);
    showTokens();
    initChoices(document);
    document.querySelectorAll("textarea[data-enter-sends]").forEach(autogrow);
    scrollToNewest();
    syncJump();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
