// polisd's web dashboard (api-gateway/ui/, served at /ui/ from the binary by api-gateway/src/rest/ui.rs).
//
// Plain JavaScript, no framework and no build step. It reads only polisd's public REST API (the Docker Engine API
// 1.41, and /polis/alerts when polisd has it) with URLs relative to the page, so it works on whichever listener
// served it. Every value from the API reaches the page as text (textContent), never as markup.
//
// Tests read what the page shows through window.polisDashboard (at the end of this file) and the charts' data-*
// attributes.

"use strict";

(function () {
  const REFRESH_MS = 2000; // one refresh of the lists and one stats sample per running container
  const POINTS = 30; // samples kept per chart: a minute at REFRESH_MS
  const MAX_EVENTS = 200;
  const EVENTS_RECONNECT_MS = 2000;

  const state = {
    refreshes: 0, // completed refreshes, successful or not
    containers: new Map(), // ID -> { name, state, health, healthDetail, cpu: [], memory: [], memoryLimit, previous }
    rows: new Map(), // ID -> the container's table row and its cells
    alerts: "loading", // "loading", "not configured", "error", or the number of firing alerts
    eventsSeen: 0,
    eventKeys: new Set(),
    lastEventTime: 0,
    eventsLive: false,
    violations: [], // Content-Security-Policy violations the page caused (there should be none)
    errors: [], // the last refresh's failures
  };

  document.addEventListener("securitypolicyviolation", (e) => {
    state.violations.push(e.violatedDirective + " " + e.blockedURI);
  });

  // ---- the API ------------------------------------------------------------------------------------------------

  // The page is at BASE/ui/ and the API at BASE/: "../" keeps whatever prefix served the page (a /v1.41 one too).
  function api(path, init) {
    return fetch("../" + path, Object.assign({ cache: "no-store" }, init || {}));
  }

  async function getJSON(path) {
    const r = await api(path, { headers: { Accept: "application/json" } });
    if (!r.ok) {
      let message = "HTTP " + r.status;
      try {
        const body = await r.json();
        if (body && body.message) message += ": " + body.message;
      } catch (_) {
        // not JSON: the status says enough
      }
      const e = new Error(path + ": " + message);
      e.status = r.status;
      throw e;
    }
    return r.json();
  }

  // ---- what the numbers mean ----------------------------------------------------------------------------------

  // A container's health as `docker ps` shows it: inspect's State.Health.Status when the object carries it, else
  // the list's Status string, which ends in "(healthy)", "(unhealthy)" or "(health: starting)" for a container
  // with a health check (the docker CLI and dockerd word it so). "" for a container without one.
  function healthOf(c) {
    const health = c && c.State && typeof c.State === "object" && c.State.Health;
    if (health && health.Status && health.Status !== "none") return health.Status;
    const m = /\((healthy|unhealthy|health: starting)\)/.exec((c && c.Status) || "");
    if (!m) return "";
    return m[1] === "health: starting" ? "starting" : m[1];
  }

  // CPU % from two samples, as the Docker Engine API 1.41 reference gives it under "Get container stats based on
  // resource usage" (GET /containers/{id}/stats) and the docker CLI computes it for `docker stats`
  // (calculateCPUPercentUnix in cli/command/container/stats_helpers.go):
  //   cpu_delta        = cpu_stats.cpu_usage.total_usage - precpu_stats.cpu_usage.total_usage
  //   system_cpu_delta = cpu_stats.system_cpu_usage - precpu_stats.system_cpu_usage
  //   number_cpus      = cpu_stats.online_cpus, or the length of cpu_stats.cpu_usage.percpu_usage
  //   CPU %            = (cpu_delta / system_cpu_delta) * number_cpus * 100.0
  // so one busy core is 100%. `cur` and `prev` are cpu_stats objects. null when there is no rate to tell (no
  // earlier sample, or the system counter did not move).
  function cpuPercent(cur, prev) {
    if (!cur || !prev || !cur.cpu_usage || !prev.cpu_usage) return null;
    const cpuDelta = (cur.cpu_usage.total_usage || 0) - (prev.cpu_usage.total_usage || 0);
    const systemDelta = (cur.system_cpu_usage || 0) - (prev.system_cpu_usage || 0);
    if (!prev.system_cpu_usage || systemDelta <= 0) return null;
    let cpus = cur.online_cpus || 0;
    if (!cpus && cur.cpu_usage.percpu_usage) cpus = cur.cpu_usage.percpu_usage.length;
    if (!cpus) cpus = 1;
    if (cpuDelta <= 0) return 0;
    return (cpuDelta / systemDelta) * cpus * 100;
  }

  // Memory in use as `docker stats` shows it (calculateMemUsageUnixNoCache in the docker CLI's
  // stats_helpers.go): usage less the inactive page cache, `total_inactive_file` on cgroup v1 and
  // `inactive_file` on v2. (The 1.41 reference subtracts `cache`; the CLI has since moved to these.)
  function memoryUsed(m) {
    if (!m || typeof m.usage !== "number") return null;
    const s = m.stats || {};
    if (typeof s.total_inactive_file === "number" && s.total_inactive_file < m.usage) {
      return m.usage - s.total_inactive_file;
    }
    if (typeof s.inactive_file === "number" && s.inactive_file < m.usage) {
      return m.usage - s.inactive_file;
    }
    return m.usage;
  }

  // ---- formatting -------------------------------------------------------------------------------------------

  function bytes(n) {
    if (typeof n !== "number" || !isFinite(n)) return "—";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i++;
    }
    return (i === 0 ? n.toFixed(0) : n.toFixed(n < 10 ? 2 : 1)) + " " + units[i];
  }

  function percent(p) {
    return typeof p === "number" ? p.toFixed(1) + "%" : "—";
  }

  function ago(seconds) {
    if (!seconds) return "";
    const d = Date.now() / 1000 - seconds;
    if (d < 60) return "just now";
    if (d < 3600) return Math.floor(d / 60) + " min ago";
    if (d < 86400) return Math.floor(d / 3600) + " h ago";
    return Math.floor(d / 86400) + " days ago";
  }

  // An ID as the docker CLI shortens it (12 hex digits); a name (a volume's, an image reference) stays whole.
  function shortId(id) {
    const hex = (id || "").replace(/^sha256:/, "");
    return /^[0-9a-f]{64}$/.test(hex) ? hex.slice(0, 12) : id || "";
  }

  function clockTime(date) {
    return date.toLocaleTimeString([], { hour12: false });
  }

  function el(tag, className, text) {
    const e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function td(text, className) {
    return el("td", className, text);
  }

  function setCount(id, n) {
    document.getElementById(id).textContent = "(" + n + ")";
  }

  // Replaces a table's rows with `rows` (arrays of cells).
  function fillTable(id, rows) {
    const body = document.querySelector("#" + id + " tbody");
    const fresh = document.createDocumentFragment();
    for (const cells of rows) {
      const tr = el("tr");
      for (const cell of cells) tr.appendChild(cell);
      fresh.appendChild(tr);
    }
    body.replaceChildren(fresh);
  }

  // ---- charts -----------------------------------------------------------------------------------------------

  // Draws `values` (oldest first, null for a gap) as a line with its area filled, the newest at the right edge,
  // scaled to `max`; the chart's data is also on the canvas (data-values, data-latest) for whoever reads the page.
  function drawChart(canvas, values, max, kind) {
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || 160;
    const height = canvas.clientHeight || 40;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const style = getComputedStyle(canvas);
    const line = style.getPropertyValue("--line").trim() || "#2563eb";
    const fill = style.getPropertyValue("--fill").trim() || "rgba(37, 99, 235, 0.15)";
    const grid = style.getPropertyValue("--grid").trim() || "#e5e7eb";

    ctx.strokeStyle = grid;
    ctx.lineWidth = 1;
    for (const f of [0.25, 0.5, 0.75]) {
      const y = Math.round(height * f) + 0.5;
      ctx.beginPath();
      ctx.moveTo(0, y);
      ctx.lineTo(width, y);
      ctx.stroke();
    }

    const step = width / (POINTS - 1);
    const x = (i) => width - (values.length - 1 - i) * step;
    const y = (v) => height - 1 - Math.min(v / max, 1) * (height - 3);
    let run = [];
    const runs = [];
    values.forEach((v, i) => {
      if (v === null || v === undefined) {
        if (run.length) runs.push(run);
        run = [];
      } else {
        run.push([x(i), y(v)]);
      }
    });
    if (run.length) runs.push(run);
    for (const points of runs) {
      ctx.beginPath();
      ctx.moveTo(points[0][0], height);
      for (const [px, py] of points) ctx.lineTo(px, py);
      ctx.lineTo(points[points.length - 1][0], height);
      ctx.closePath();
      ctx.fillStyle = fill;
      ctx.fill();
      ctx.beginPath();
      points.forEach(([px, py], i) => (i ? ctx.lineTo(px, py) : ctx.moveTo(px, py)));
      if (points.length === 1) ctx.lineTo(points[0][0] - 1, points[0][1]);
      ctx.strokeStyle = line;
      ctx.lineWidth = 1.5;
      ctx.stroke();
    }

    ctx.fillStyle = style.color || "#6b7280";
    ctx.font = "10px sans-serif";
    ctx.textBaseline = "top";
    ctx.fillText(kind === "cpu" ? percent(max).replace(".0", "") : bytes(max), 3, 2);

    const known = values.filter((v) => typeof v === "number");
    canvas.dataset.values = JSON.stringify(values.map((v) => (typeof v === "number" ? +v.toFixed(3) : null)));
    canvas.dataset.latest = known.length ? String(known[known.length - 1]) : "";
    canvas.dataset.max = String(max);
  }

  // The CPU chart's scale: 100% (one core) or the next multiple of 100% above the highest value.
  function cpuScale(values) {
    const top = Math.max(0, ...values.filter((v) => typeof v === "number"));
    return Math.max(100, Math.ceil(top / 100) * 100);
  }

  // The memory chart's scale: the container's limit when it is near its use, else a round value above the highest.
  function memoryScale(values, limit) {
    const top = Math.max(1 << 20, ...values.filter((v) => typeof v === "number"));
    if (limit && limit < top * 4) return limit;
    let scale = 1 << 20;
    while (scale < top * 1.25) scale *= 2;
    return scale;
  }

  function push(series, value) {
    series.push(value);
    while (series.length > POINTS) series.shift();
  }

  // ---- containers -------------------------------------------------------------------------------------------

  function containerName(c) {
    return ((c.Names && c.Names[0]) || shortId(c.Id)).replace(/^\//, "");
  }

  function rowFor(id) {
    let row = state.rows.get(id);
    if (row) return row;
    const tr = el("tr");
    tr.dataset.id = id;
    row = {
      tr,
      name: td("", "name"),
      image: td("", "image"),
      state: td(""),
      health: td(""),
      status: td("", "status muted"),
      cpu: td("", "chart-cell"),
      memory: td("", "chart-cell"),
    };
    row.stateBadge = el("span", "badge");
    row.state.appendChild(row.stateBadge);
    row.healthBadge = el("span", "badge");
    row.health.appendChild(row.healthBadge);
    row.cpuCanvas = el("canvas", "chart chart-cpu");
    row.cpuCanvas.setAttribute("role", "img");
    row.cpuValue = el("span", "chart-value");
    row.cpu.append(row.cpuCanvas, row.cpuValue);
    row.memoryCanvas = el("canvas", "chart chart-memory");
    row.memoryCanvas.setAttribute("role", "img");
    row.memoryValue = el("span", "chart-value");
    row.memory.append(row.memoryCanvas, row.memoryValue);
    tr.append(row.name, row.image, row.state, row.health, row.status, row.cpu, row.memory);
    state.rows.set(id, row);
    return row;
  }

  function renderContainer(id) {
    const c = state.containers.get(id);
    const row = rowFor(id);
    row.tr.dataset.name = c.name;
    row.tr.dataset.state = c.state;
    row.tr.dataset.health = c.health;
    row.tr.className = "state-" + c.state + (c.health ? " health-" + c.health : "");
    row.name.textContent = c.name;
    row.name.title = c.id;
    row.image.textContent = c.image;
    row.stateBadge.textContent = c.state;
    row.stateBadge.className = "badge state state-" + c.state;
    if (c.health) {
      row.healthBadge.textContent = c.health === "unhealthy" ? "⚠ unhealthy" : c.health;
      row.healthBadge.className = "badge health health-" + c.health;
      row.healthBadge.title = c.healthDetail || "";
    } else {
      row.healthBadge.textContent = "—";
      row.healthBadge.className = "badge health health-none";
      row.healthBadge.title = "no health check";
    }
    row.status.textContent = c.status;
    const live = c.state === "running" || c.state === "paused";
    row.cpuCanvas.hidden = !live;
    row.memoryCanvas.hidden = !live;
    if (live) {
      const cpuMax = cpuScale(c.cpu);
      drawChart(row.cpuCanvas, c.cpu, cpuMax, "cpu");
      const memMax = memoryScale(c.memory, c.memoryLimit);
      drawChart(row.memoryCanvas, c.memory, memMax, "memory");
      const cpuKnown = c.cpu.filter((v) => typeof v === "number");
      row.cpuValue.textContent = cpuKnown.length ? percent(cpuKnown[cpuKnown.length - 1]) : "…";
      const memKnown = c.memory.filter((v) => typeof v === "number");
      row.memoryValue.textContent = memKnown.length
        ? bytes(memKnown[memKnown.length - 1]) + (c.memoryLimit ? " / " + bytes(c.memoryLimit) : "")
        : "…";
      row.cpuCanvas.setAttribute("aria-label", "CPU of " + c.name + ": " + row.cpuValue.textContent);
      row.memoryCanvas.setAttribute("aria-label", "memory of " + c.name + ": " + row.memoryValue.textContent);
    } else {
      row.cpuValue.textContent = "";
      row.memoryValue.textContent = "";
    }
  }

  // One stats sample of a running container into its series. The first sample of a container is Docker's
  // `stream=false` answer, whose precpu_stats are a second older; the later ones are `one-shot` samples, each
  // compared with the one before it (kept here), so that a refresh never waits a second per container.
  async function sample(id) {
    const c = state.containers.get(id);
    const first = !c.previous;
    const s = await getJSON(
      "containers/" + encodeURIComponent(id) + "/stats?stream=false" + (first ? "" : "&one-shot=true")
    );
    const cpu = cpuPercent(s.cpu_stats, first ? s.precpu_stats : c.previous);
    if (cpu !== null || !first) push(c.cpu, cpu);
    c.previous = s.cpu_stats;
    const m = s.memory_stats || {};
    push(c.memory, memoryUsed(m));
    c.memoryLimit = m.limit || 0;
  }

  // What a container's health check last said (inspect's State.Health), for the health badge's tooltip.
  async function healthDetail(id) {
    const c = state.containers.get(id);
    const info = await getJSON("containers/" + encodeURIComponent(id) + "/json");
    const h = info.State && info.State.Health;
    if (!h) return;
    c.health = healthOf(info) || c.health;
    const last = h.Log && h.Log.length ? h.Log[h.Log.length - 1] : null;
    c.healthDetail =
      "failing streak: " + (h.FailingStreak || 0) + (last ? "\nlast check: exit " + last.ExitCode + " " + (last.Output || "").trim() : "");
  }

  async function refreshContainers() {
    const list = await getJSON("containers/json?all=1");
    list.sort((a, b) => containerName(a).localeCompare(containerName(b)));
    const seen = new Set();
    for (const item of list) {
      seen.add(item.Id);
      let c = state.containers.get(item.Id);
      if (!c) {
        c = { id: item.Id, cpu: [], memory: [], memoryLimit: 0, previous: null, healthDetail: "" };
        state.containers.set(item.Id, c);
      }
      c.name = containerName(item);
      c.image = item.Image || "";
      c.state = item.State || "unknown";
      c.status = item.Status || "";
      c.health = healthOf(item);
      if (c.state !== "running") c.previous = null;
    }
    for (const id of [...state.containers.keys()]) {
      if (!seen.has(id)) {
        state.containers.delete(id);
        const row = state.rows.get(id);
        if (row) row.tr.remove();
        state.rows.delete(id);
      }
    }
    const work = [];
    for (const item of list) {
      if (item.State === "running") work.push(sample(item.Id).catch(() => {}));
      if (healthOf(item)) work.push(healthDetail(item.Id).catch(() => {}));
    }
    await Promise.all(work);

    const body = document.querySelector("#containers tbody");
    list.forEach((item, i) => {
      if (!state.containers.has(item.Id)) return;
      renderContainer(item.Id);
      const tr = state.rows.get(item.Id).tr;
      if (body.children[i] !== tr) body.insertBefore(tr, body.children[i] || null);
    });
    setCount("containers-count", list.length);
    document.getElementById("containers-empty").hidden = list.length > 0;
  }

  // ---- images, networks, volumes ----------------------------------------------------------------------------

  async function refreshImages() {
    const images = await getJSON("images/json");
    images.sort((a, b) => (b.Created || 0) - (a.Created || 0));
    fillTable(
      "images",
      images.map((i) => {
        const tags = (i.RepoTags || []).filter((t) => t !== "<none>:<none>");
        return [
          td(tags.length ? tags.join(", ") : "<none>", "name"),
          td(shortId(i.Id), "mono"),
          td(bytes(i.Size)),
          td(ago(i.Created), "muted"),
        ];
      })
    );
    setCount("images-count", images.length);
  }

  async function refreshNetworks() {
    const networks = await getJSON("networks");
    networks.sort((a, b) => (a.Name || "").localeCompare(b.Name || ""));
    fillTable(
      "networks",
      networks.map((n) => {
        const configs = (n.IPAM && n.IPAM.Config) || [];
        const subnets = configs.map((c) => c.Subnet).filter(Boolean);
        return [td(n.Name, "name"), td(n.Driver || ""), td(subnets.join(", ") || "—", "mono"), td(shortId(n.Id), "mono")];
      })
    );
    setCount("networks-count", networks.length);
  }

  async function refreshVolumes() {
    const answer = await getJSON("volumes");
    const volumes = (answer && answer.Volumes) || [];
    volumes.sort((a, b) => (a.Name || "").localeCompare(b.Name || ""));
    fillTable(
      "volumes",
      volumes.map((v) => [td(v.Name, "name mono"), td(v.Driver || ""), td(v.Mountpoint || "", "mono muted")])
    );
    setCount("volumes-count", volumes.length);
  }

  // ---- alerts -----------------------------------------------------------------------------------------------

  // GET /polis/alerts: Alertmanager API v2-like alerts. A polisd without it answers 404, which is not an error.
  async function refreshAlerts() {
    const status = document.getElementById("alerts-status");
    const list = document.getElementById("alerts");
    const r = await api("polis/alerts", { headers: { Accept: "application/json" } });
    if (r.status === 404) {
      state.alerts = "not configured";
      status.textContent = "alerts: not configured";
      status.className = "muted";
      list.replaceChildren();
      return;
    }
    if (!r.ok) {
      state.alerts = "error";
      status.textContent = "alerts: HTTP " + r.status;
      status.className = "error";
      return;
    }
    const alerts = await r.json();
    const firing = (Array.isArray(alerts) ? alerts : []).filter(
      (a) => !a.status || !a.status.state || a.status.state === "active"
    );
    state.alerts = firing.length;
    status.textContent = firing.length ? firing.length + " firing" : "no firing alerts";
    status.className = firing.length ? "alerting" : "muted";
    const items = firing.map((a) => {
      const labels = a.labels || {};
      const notes = a.annotations || {};
      const li = el("li", "alert severity-" + (labels.severity || "none"));
      li.dataset.alertname = labels.alertname || "";
      li.appendChild(el("strong", "", labels.alertname || "alert"));
      if (labels.severity) li.appendChild(el("span", "badge", labels.severity));
      const about = Object.keys(labels)
        .filter((k) => k !== "alertname" && k !== "severity")
        .map((k) => k + "=" + labels[k])
        .join(" ");
      if (about) li.appendChild(el("span", "mono muted", about));
      const text = notes.summary || notes.description || "";
      if (text) li.appendChild(el("span", "", text));
      if (a.startsAt) {
        const since = new Date(a.startsAt);
        if (!isNaN(since)) li.appendChild(el("span", "muted", "since " + since.toLocaleString()));
      }
      return li;
    });
    list.replaceChildren(...items);
  }

  // ---- the refresh loop -------------------------------------------------------------------------------------

  let refreshing = false;
  let again = false;
  let timer = null;

  async function refresh() {
    if (refreshing) {
      again = true;
      return;
    }
    refreshing = true;
    clearTimeout(timer);
    const parts = [refreshContainers(), refreshImages(), refreshNetworks(), refreshVolumes(), refreshAlerts()];
    const results = await Promise.allSettled(parts);
    state.errors = results.filter((r) => r.status === "rejected").map((r) => String(r.reason && r.reason.message));
    const badge = document.getElementById("connection");
    if (state.errors.length) {
      badge.textContent = "error";
      badge.className = "badge badge-error";
      badge.title = state.errors.join("\n");
    } else {
      badge.textContent = "live";
      badge.className = "badge badge-live";
      badge.title = "refreshed every " + REFRESH_MS / 1000 + " s";
    }
    document.getElementById("updated").textContent = "updated " + clockTime(new Date());
    state.refreshes++;
    refreshing = false;
    timer = setTimeout(refresh, again ? 0 : REFRESH_MS);
    again = false;
  }

  // A change the events stream told of shows at once rather than at the next refresh.
  let soon = null;
  function refreshSoon() {
    if (soon) return;
    soon = setTimeout(() => {
      soon = null;
      refresh();
    }, 250);
  }

  async function describeDaemon() {
    try {
      const [version, info] = await Promise.all([getJSON("version"), getJSON("info")]);
      document.getElementById("daemon").textContent =
        "Polis " + (version.Version || "?") + " · API " + (version.ApiVersion || "?") + " · " + (info.Name || "") +
        " · " + (info.NCPU || "?") + " CPUs · " + bytes(info.MemTotal) + " · " + (info.KernelVersion || "");
    } catch (e) {
      document.getElementById("daemon").textContent = String(e.message);
    }
  }

  // ---- the events stream ------------------------------------------------------------------------------------

  function showEvent(ev) {
    const actor = ev.Actor || {};
    const attrs = actor.Attributes || {};
    const key = [ev.timeNano || ev.time, ev.Type, ev.Action, actor.ID].join("|");
    if (state.eventKeys.has(key)) return;
    // The keys only guard against a reconnection's replay of the last second: a bounded set is enough.
    if (state.eventKeys.size >= 4 * MAX_EVENTS) state.eventKeys.clear();
    state.eventKeys.add(key);
    state.eventsSeen++;
    state.lastEventTime = Math.max(state.lastEventTime, ev.time || 0);
    const when = ev.timeNano ? new Date(ev.timeNano / 1e6) : new Date((ev.time || 0) * 1000);
    const li = el("li", "event event-" + (ev.Type || "unknown"));
    li.dataset.type = ev.Type || "";
    li.dataset.action = ev.Action || "";
    li.dataset.name = attrs.name || "";
    li.appendChild(el("time", "muted mono", clockTime(when)));
    li.appendChild(el("span", "badge", ev.Type || "?"));
    li.appendChild(el("strong", "", ev.Action || ev.status || "?"));
    li.appendChild(el("span", "", attrs.name || shortId(actor.ID || ev.id)));
    if (attrs.image) li.appendChild(el("span", "muted", attrs.image));
    const list = document.getElementById("events");
    list.insertBefore(li, list.firstChild);
    while (list.children.length > MAX_EVENTS) list.lastChild.remove();
    if (ev.Type === "container" || ev.Type === "image" || ev.Type === "network" || ev.Type === "volume") {
      refreshSoon();
    }
  }

  function eventsStatus(text, className) {
    const s = document.getElementById("events-status");
    s.textContent = text;
    s.className = className;
  }

  // GET /events is a stream of JSON objects, one a line, that never ends by itself: read with fetch and the
  // body's ReadableStream. From the last hour on first, and after a broken connection from the last event seen
  // (events already shown are recognised and skipped).
  async function followEvents() {
    const since = state.lastEventTime || Math.floor(Date.now() / 1000) - 3600;
    try {
      const r = await api("events?since=" + since, { headers: { Accept: "application/json" } });
      if (!r.ok || !r.body) throw new Error("HTTP " + r.status);
      state.eventsLive = true;
      eventsStatus("live", "badge badge-live");
      const reader = r.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let nl;
        while ((nl = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, nl).trim();
          buffer = buffer.slice(nl + 1);
          if (!line) continue;
          try {
            showEvent(JSON.parse(line));
          } catch (_) {
            // a line that is not an event: skip it, keep reading
          }
        }
      }
      eventsStatus("ended, reconnecting…", "muted");
    } catch (e) {
      eventsStatus("disconnected (" + e.message + "), reconnecting…", "error");
    }
    state.eventsLive = false;
    setTimeout(followEvents, EVENTS_RECONNECT_MS);
  }

  // ---- what tests read --------------------------------------------------------------------------------------

  function view(c) {
    return {
      id: c.id,
      name: c.name,
      state: c.state,
      health: c.health,
      cpu: c.cpu.slice(),
      memory: c.memory.slice(),
      memoryLimit: c.memoryLimit,
    };
  }

  window.polisDashboard = Object.freeze({
    refreshes: () => state.refreshes,
    containers: () => [...state.containers.values()].map(view),
    container: (name) => {
      const c = [...state.containers.values()].find((x) => x.name === name);
      return c ? view(c) : null;
    },
    alerts: () => state.alerts,
    events: () => ({ seen: state.eventsSeen, live: state.eventsLive }),
    errors: () => state.errors.slice(),
    violations: () => state.violations.slice(),
    healthOf,
    cpuPercent,
    memoryUsed,
  });

  describeDaemon();
  refresh();
  followEvents();
})();
