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
  function actionKey(letter) {
    if (!panel || panel.hidden) return false;
    const target = panel.querySelector('[data-action="' + letter + '"]');
    if (!target) return false;
    if (target.tagName === "FORM") { target.requestSubmit(); return true; }
    target.open = true;
    const field = target.querySelector("input:not([type=hidden]), textarea");
    if (field) field.focus();
    return true;
  }
  document.addEventListener("keydown", (event) => {
    const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement.tagName);
    if (event.key === "Escape") { closePanel(); return; }
    if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "j" || event.key === "ArrowDown") { move(1); event.preventDefault(); }
    else if (event.key === "k" || event.key === "ArrowUp") { move(-1); event.preventDefault(); }
    else if (event.key === "Enter" && selected) { openPanel(selected); event.preventDefault(); }
    else if ("pudancs".includes(event.key) && actionKey(event.key)) { event.preventDefault(); }
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
