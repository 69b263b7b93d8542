// The status page: polls ui/status and redraws the models, versions and latency charts.
// Plain DOM calls only (never innerHTML: error reasons come from files in the store).
"use strict";

(function () {
  const params = new URLSearchParams(window.location.search);
  const REFRESH_MS = Math.max(500, 1000 * (parseFloat(params.get("refresh")) || 2));
  const SVG = "http://www.w3.org/2000/svg";
  const COLUMNS = [
    ["Version", ""], ["State", ""], ["Role", ""], ["Samples checked", "num"],
    ["Requests/s", "num"], ["Errors", "num"], ["p50 ms", "num"], ["p99 ms", "num"],
    ["Feedback", "num"], ["Latency, last minute", "wide"], ["Drift", ""],
  ];

  let paused = false;
  let lastOk = 0;
  let timer = null;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") node.textContent = value;
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child);
    }
    return node;
  }

  function dash() {
    return el("span", { class: "none", "aria-label": "none", text: "—" });
  }

  function fixed(value, digits) {
    return value === null || value === undefined ? dash() : value.toFixed(digits);
  }

  function percent(value) {
    return value === null || value === undefined ? "—" : (100 * value).toFixed(2) + "%";
  }

  function slug(text) {
    return text.replace(/[^a-z0-9_-]/gi, "-");
  }

  // A small line chart of p50 and p99 per step of the window, drawn as inline SVG.
  function chart(traffic, label) {
    const width = 150, height = 40, pad = 4;
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "chart");
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.setAttribute("role", "img");
    const title = document.createElementNS(SVG, "title");
    svg.append(title);
    const axis = document.createElementNS(SVG, "line");
    axis.setAttribute("class", "axis");
    axis.setAttribute("x1", 0); axis.setAttribute("x2", width);
    axis.setAttribute("y1", height - pad); axis.setAttribute("y2", height - pad);
    svg.append(axis);
    const series = traffic ? traffic.series : [];
    const top = Math.max(0, ...series.map((s) => s.p99_ms || 0));
    if (!traffic || !traffic.requests || !top) {
      title.textContent = `${label}: no requests in the last minute`;
      svg.setAttribute("aria-label", title.textContent);
      return svg;
    }
    const step = (width - 2 * pad) / Math.max(1, series.length - 1);
    const y = (ms) => height - pad - (ms / top) * (height - pad - 11);  // the top 11 px: the scale
    for (const key of ["p50_ms", "p99_ms"]) {
      const cls = key === "p50_ms" ? "p50" : "p99";
      let path = "";
      let pen = "M";
      series.forEach((s, i) => {
        if (s[key] === null) { pen = "M"; return; }
        path += `${pen}${(pad + i * step).toFixed(1)} ${y(s[key]).toFixed(1)} `;
        pen = "L";
        const dot = document.createElementNS(SVG, "circle");
        dot.setAttribute("class", cls === "p50" ? "dot50" : "dot99");
        dot.setAttribute("cx", (pad + i * step).toFixed(1));
        dot.setAttribute("cy", y(s[key]).toFixed(1));
        dot.setAttribute("r", 1.4);
        svg.append(dot);
      });
      const line = document.createElementNS(SVG, "path");
      line.setAttribute("class", cls);
      line.setAttribute("d", path.trim());
      svg.append(line);
    }
    const scale = document.createElementNS(SVG, "text");
    scale.setAttribute("class", "scale");
    scale.setAttribute("x", width);
    scale.setAttribute("y", 8);
    scale.setAttribute("text-anchor", "end");
    scale.textContent = `${top < 10 ? top.toFixed(1) : Math.round(top)} ms`;
    svg.append(scale);
    title.textContent = `${label}: p50 ${traffic.p50_ms} ms, p99 ${traffic.p99_ms} ms over the last minute; ` +
      `highest p99 of a 5-second step ${top} ms`;
    svg.setAttribute("aria-label", title.textContent);
    return svg;
  }

  // Accuracy (classifiers) or mean absolute error (regressors) of POST /feedback, in total,
  // with the number of items scored.
  function feedbackText(feedback) {
    const total = feedback && feedback.total;
    if (!total || !total.matched) return dash();
    const figure = total.accuracy !== null
      ? percent(total.accuracy) : `MAE ${total.mean_abs_error.toPrecision(4)}`;
    return el("span", { title: `${total.matched} scored in total`, text: `${figure} of ${total.matched}` });
  }

  function role(model, version) {
    const rollout = model.rollout || {};
    if (rollout.state !== "none" && rollout.candidate === version.version) {
      const share = rollout.traffic_percent === null ? "" : ` (${rollout.traffic_percent}% traffic)`;
      return el("span", { class: "tag candidate", text: "candidate" + share });
    }
    if (version.default) return el("span", { class: "tag default", text: "default" });
    return dash();
  }

  function driftCell(drift) {
    if (!drift || drift.state === "unprofiled") return dash();
    if (drift.state === "waiting") return el("span", { class: "tag", text: "first window open" });
    const moved = drift.moved.map((f) => `${f.name} (PSI ${f.psi} > ${f.threshold})`).join(", ");
    const text = drift.state === "drift" ? `drift: ${moved}` : "ok";
    return el("span", {
      class: `tag drift-${drift.state}`,
      text: text,
      title: `window ${drift.window}, ${drift.rows} rows`,
    });
  }

  function versionRows(model, version) {
    const id = `${slug(model.name)}-v${version.version}`;
    const traffic = version.traffic;
    const label = `${model.name} version ${version.version}`;
    const cells = [
      el("span", { class: `state state-${version.state}`, text: version.state }),
      role(model, version),
      version.samples_checked === undefined || version.samples_checked === null
        ? dash() : String(version.samples_checked),
      traffic ? traffic.rate_per_s.toFixed(2) : fixed(null),
      traffic ? String(traffic.errors) : fixed(null),
      fixed(traffic && traffic.p50_ms, 2),
      fixed(traffic && traffic.p99_ms, 2),
      feedbackText(version.feedback),
      chart(traffic, label),
      driftCell(version.drift),
    ];
    const row = el("tr", { id: id, role: "row", class: version.error ? "has-error" : null },
      el("th", { scope: "row", role: "rowheader", "data-label": COLUMNS[0][0], text: `v${version.version}` }));
    cells.forEach((cell, i) => {
      const [name, cls] = COLUMNS[i + 1];
      row.append(el("td", { role: "cell", class: cls || null, "data-label": name }, cell));
    });
    const rows = [row];
    if (version.error) {
      rows.push(el("tr", { class: "error-row", role: "row" },
        el("td", { colspan: COLUMNS.length, role: "cell" },
          el("p", { class: "reason" }, el("strong", { text: `v${version.version} error: ` }),
            version.error))));
    }
    return rows;
  }

  function rolloutFacts(rollout) {
    const facts = [["Rollout", rollout.state]];
    if (rollout.state !== "none") {
      facts.push(["Candidate", rollout.candidate === null ? "—" : `v${rollout.candidate}`]);
      facts.push(["Traffic", rollout.traffic_percent === null ? "—" : `${rollout.traffic_percent}%`]);
      facts.push(["Shadow", rollout.shadow_percent === null ? "—" : `${rollout.shadow_percent}%`]);
      let agreement = percent(rollout.agreement);
      if (rollout.agreement_ci95) {
        agreement += ` (95% CI ${percent(rollout.agreement_ci95[0])}–${percent(rollout.agreement_ci95[1])})`;
      }
      facts.push(["Agreement", agreement]);
      if (rollout.halt_reason) facts.push(["Halted because", rollout.halt_reason]);
    }
    const promotion = rollout.last_promotion;
    if (promotion) {
      const when = promotion.at ? ` at ${promotion.at}` : "";
      facts.push(["Last promotion", `v${promotion.previous} → v${promotion.version}${when}`]);
    }
    if (rollout.rollback_restores !== null && rollout.rollback_restores !== undefined) {
      facts.push(["Rollback restores", `v${rollout.rollback_restores}`]);
    }
    return facts;
  }

  function modelSection(model) {
    const headingId = `model-${slug(model.name)}`;
    const facts = [
      ["Default version", model.default_version === null ? "none" : `v${model.default_version}`],
      ["Version policy", model.version_policy || "latest:1"],
      ...rolloutFacts(model.rollout || { state: "none" }),
    ];
    const list = el("dl", { class: "model-facts" });
    for (const [name, value] of facts) {
      list.append(el("div", {}, el("dt", { text: name }), el("dd", { text: value })));
    }
    const table = el("table", { role: "table" },
      el("caption", { class: "visually-hidden", text: `Versions of ${model.name}` }),
      el("thead", { role: "rowgroup" }, el("tr", { role: "row" },
        ...COLUMNS.map(([name, cls]) => el("th", { scope: "col", role: "columnheader", class: cls || null, text: name })))));
    const body = el("tbody", { role: "rowgroup" });
    model.versions.forEach((version) => body.append(...versionRows(model, version)));
    table.append(body);
    return el("section", { class: "model", "aria-labelledby": headingId },
      el("h2", { id: headingId, text: model.name }),
      list,
      model.error ? el("p", { class: "alert", role: "alert", text: `Configuration error: ${model.error}` }) : null,
      model.versions.length ? table : el("p", { class: "none", text: "No versions in the store." }));
  }

  function render(status) {
    const main = document.getElementById("models");
    const focused = document.activeElement && document.activeElement.id;
    const sections = status.models.map(modelSection);
    if (!sections.length) sections.push(el("p", { class: "empty", text: "The store holds no models." }));
    main.replaceChildren(...sections);
    if (focused && document.getElementById(focused)) document.getElementById(focused).focus();

    const versions = status.models.flatMap((m) => m.versions);
    const count = (state) => versions.filter((v) => v.state === state).length;
    const failed = count("FAILED");
    document.getElementById("summary").textContent =
      `${status.models.length} model${status.models.length === 1 ? "" : "s"} · ` +
      `${count("AVAILABLE")} version${count("AVAILABLE") === 1 ? "" : "s"} serving · ` +
      `${failed} failed · ${status.ready ? "ready" : "not ready"}`;
    document.getElementById("docs-link").hidden = !status.docs_enabled;

    const workers = status.workers;
    const scope = workers.configured > 1
      ? `summed over the server's ${workers.configured} workers (${workers.traffic_from} with traffic); ` +
        `states as worker ${workers.answered_by} sees them (workers converge within a poll)`
      : `of the server's one worker (pid ${workers.answered_by})`;
    const legend = el("span", { class: "legend", "aria-hidden": "true" },
      el("span", {}, el("span", { class: "key50" }), "p50"),
      el("span", {}, el("span", { class: "key99" }), "p99"));
    document.getElementById("footer").replaceChildren(
      el("p", {}, legend),
      el("p", { text: `Requests/s, errors (status 400 and above) and latency cover the last ${status.window_s} s, ${scope}. ` +
        "Percentiles are estimated from the histogram buckets, as Prometheus's histogram_quantile does; each chart point is 5 s." }),
      el("p", { text: status.poll_interval_s > 0
        ? `The store is rescanned every ${status.poll_interval_s} s; this page asks every ${REFRESH_MS / 1000} s.`
        : `The store is not watched (POLL_INTERVAL_S=0); this page asks every ${REFRESH_MS / 1000} s.` }));
  }

  function showUpdated(text, stale) {
    const node = document.getElementById("updated");
    node.textContent = text;
    node.classList.toggle("stale", stale);
  }

  async function poll() {
    timer = null;
    if (paused) return;
    try {
      const response = await fetch("ui/status", { cache: "no-store", headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error(`status ${response.status}`);
      render(await response.json());
      lastOk = Date.now();
      showUpdated(`Updated ${new Date(lastOk).toLocaleTimeString()}`, false);
    } catch (error) {
      const since = lastOk ? ` since ${new Date(lastOk).toLocaleTimeString()}` : "";
      showUpdated(`Server not answering${since}; retrying`, true);
    }
    if (!paused) timer = window.setTimeout(poll, REFRESH_MS);
  }

  document.addEventListener("DOMContentLoaded", () => {
    const button = document.getElementById("pause");
    button.addEventListener("click", () => {
      paused = !paused;
      button.setAttribute("aria-pressed", String(paused));
      button.textContent = paused ? "Resume updates" : "Pause updates";
      if (paused && timer !== null) { window.clearTimeout(timer); timer = null; }
      if (!paused) poll();
      else showUpdated("Updates paused", false);
    });
    poll();
  });
})();
