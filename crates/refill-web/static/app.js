// Refill Clinic: keyboard moves on the queue, the side panel, and live updates over server-sent events.
(function () {
  "use strict";
  const csrf = document.body.dataset.csrf || "";
  const panel = document.getElementById("panel");
  const live = document.querySelector("[data-live]");
  let selected = null;
  let refreshTimer = null;

  function rows() { return Array.from(document.querySelectorAll("tr.row")); }
  function select(row) {
    if (selected) selected.classList.remove("selected");
    selected = row;
    if (row) { row.classList.add("selected"); row.focus({ preventScroll: false }); }
  }
  function move(step) {
    const all = rows();
    if (!all.length) return;
    const index = selected ? all.indexOf(selected) : -1;
    select(all[Math.max(0, Math.min(all.length - 1, index + step))]);
  }
  async function openPanel(row) {
    if (!panel || !row || !row.dataset.patient) { if (row && row.dataset.href) location.href = row.dataset.href; return; }
    const response = await fetch("/queue/" + row.dataset.patient + "/panel", { headers: { "Accept": "text/html" } });
    panel.innerHTML = await response.text();
    panel.hidden = false;
    wirePanel();
  }
  async function closePanel() {
    if (!panel || panel.hidden) return;
    panel.hidden = true;
    panel.innerHTML = "";
    await fetch("/queue/close", { method: "POST", headers: { "x-csrf-token": csrf } });
    if (selected) selected.focus();
  }
  function wirePanel() {
    panel.querySelectorAll("[data-close]").forEach((b) => b.addEventListener("click", closePanel));
    panel.querySelectorAll("form").forEach((form) => form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = new URLSearchParams(new FormData(form));
      // getAttribute: `form.action` would be the hidden input named "action".
      const response = await fetch(form.getAttribute("action"), { method: "POST", body, headers: { "Accept": "text/html" } });
      panel.innerHTML = await response.text();
      wirePanel();
      refreshSoon(0);
    }));
  }
  // What each action letter does, to say so when it does not apply to the row.
  const LETTERS = { p: "prepare", u: "record a drug test", o: "record a drug test collection", t: "a drug test in progress",
    d: "record a PDMP review", a: "record an agreement", n: "record naloxone", r: "record a request",
    f: "record a dispense", c: "record a contact", s: "send to a physician" };
  const note = document.getElementById("key-note");
  function say(text) {
    const where = (panel && !panel.hidden && panel.querySelector("#panel-key-note")) || note;
    if (!where) return;
    where.textContent = text;
    where.hidden = false;
  }
  function actionKey(letter) {
    if (!panel || panel.hidden) return false;
    const target = panel.querySelector('[data-action="' + letter + '"]');
    if (!target) {
      const inner = panel.querySelector(".panel-inner");
      const why = (inner && inner.dataset["not" + letter.toUpperCase()]) || (letter === "t" ? "no drug test is in progress" : "");
      say("“" + letter + "” (" + LETTERS[letter] + ") does not apply to this row" + (why ? ": " + why + "." : "."));
      return true;
    }
    if (target.tagName === "FORM") { target.requestSubmit(); return true; }
    target.open = true;
    const field = target.querySelector("input:not([type=hidden]), textarea, select");
    if (field) field.focus();
    return true;
  }
  document.addEventListener("keydown", async (event) => {
    const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement.tagName);
    if (event.key === "Escape") { closePanel(); return; }
    if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "j" || event.key === "ArrowDown") { move(1); event.preventDefault(); }
    else if (event.key === "k" || event.key === "ArrowUp") { move(-1); event.preventDefault(); }
    else if (event.key === "Enter" && selected) { openPanel(selected); event.preventDefault(); }
    else if (Object.prototype.hasOwnProperty.call(LETTERS, event.key)) {
      event.preventDefault();
      if (panel && panel.hidden && selected) await openPanel(selected);
      if (!actionKey(event.key)) say("Select a row first (j/k or arrows), then press “" + event.key + "”.");
    }
  });
  document.addEventListener("click", (event) => {
    const row = event.target.closest("tr.row");
    if (!row || event.target.closest("a")) return;
    select(row);
    openPanel(row);
  });
  function refreshSoon(delay) {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(refresh, delay);
  }
  async function refresh() {
    if (!live) return;
    const kind = live.dataset.live;
    const url = new URL(location.href);
    if (kind === "queue") url.searchParams.set("partial", "rows");
    const response = await fetch(url, { headers: { "Accept": "text/html" } });
    if (!response.ok) return;
    const html = await response.text();
    const keep = selected ? selected.dataset.patient : null;
    if (kind === "queue") {
      document.getElementById("queue-body").innerHTML = html;
    } else {
      const doc = new DOMParser().parseFromString(html, "text/html");
      const fresh = doc.querySelector("[data-live]");
      const current = document.querySelector("[data-live]");
      if (fresh && current) current.replaceWith(fresh);
    }
    if (keep) { const again = document.getElementById("row-" + keep); if (again) { selected = again; again.classList.add("selected"); } }
  }
  if (live && window.EventSource) {
    const source = new EventSource("/events");
    source.addEventListener("change", () => refreshSoon(250));
  }
})();
