// Live timeline: every 5 seconds, while the tab is visible, ask whether the user's stream
// has a new version; if so, fetch this same page (same filters) and swap the timeline and
// the current mutes in place. A polite refresh, not a stream: one small GET per open tab.
"use strict";
(function () {
  const timeline = document.getElementById("timeline");
  if (!timeline || timeline.dataset.live !== "on") return;
  const user = timeline.dataset.user;
  let version = timeline.dataset.version;
  async function check() {
    if (document.hidden) return;
    try {
      const answer = await fetch("/console/version?id=" + encodeURIComponent(user), { credentials: "same-origin" });
      if (!answer.ok) return;
      const now = String((await answer.json()).version);
      if (now === version) return;
      const page = await fetch(location.href, { credentials: "same-origin" });
      if (!page.ok) return;
      const fresh = new DOMParser().parseFromString(await page.text(), "text/html");
      for (const id of ["timeline", "mutes"]) {
        const incoming = fresh.getElementById(id);
        const current = document.getElementById(id);
        if (incoming && current) current.replaceWith(document.importNode(incoming, true));
      }
      version = now;
    } catch (e) {
      // Offline for a moment: the next tick tries again.
    }
  }
  setInterval(check, 5000);
})();
