/* crossrank web page: talks to the service's own API (/v1/rerank with raw_scores and read spans, /info).
 * Safety rule for this file: user text (queries, passages, error details) only ever reaches the page through
 * textContent or text nodes — never parsed as markup — so hostile passages show literally and run nothing.
 * Words live in i18n.js, the pure rules (threshold, collapsing, highlighting terms) in logic.js. */
(function () {
  "use strict";

  var I18N = window.CrossrankI18n;
  var L = window.CrossrankLogic;
  var D = window.CrossrankDom, node = D.node;
  var PAGE = 50;             // cards shown at first, and added by each "show more"
  var COLLAPSE_AT = 600;     // passages longer than this (code points) start collapsed

  var $ = function (id) { return document.getElementById(id); };
  var el = {
    form: $("form"), query: $("query"), docs: $("documents"), lineCount: $("line-count"), example: $("example"),
    keyDetails: $("key-details"), apiKey: $("api-key"), rerank: $("rerank"), results: $("results"),
    threshold: $("threshold"), thresholdNumber: $("threshold-number"), thresholdError: $("threshold-error"),
    hideBelow: $("hide-below"), rawToggle: $("raw-toggle"), raw: $("raw"), rawTable: $("raw-table"),
    status: $("status"), stale: $("stale"), error: $("error"), cards: $("cards"), more: $("more"),
    empty: $("empty"), lang: $("lang"), infoModel: $("info-model"), infoDevice: $("info-device"),
    infoDtype: $("info-dtype"), exportCsv: $("export-csv"), exportJson: $("export-json")
  };

  var state = {
    lang: "en",
    busy: false,
    run: null,          // {query, docsText, model, ms, rows: [{rank, index, line, text, score, raw, span}]}
    cardEls: [],        // card <li> per shown row of state.run.rows, for live recolouring
    shown: PAGE,        // how many of the rows have cards
    expanded: new Set(),  // rows (by index) whose long passage the user opened
    divider: null,
    threshold: 0.5,     // the number box may hold more precision than the slider's steps
    examples: [],
    errorFor: null      // what would fix the error shown: "query", "docs", "key" or "input"
  };

  // ---------- small helpers ----------

  function t(key, vars) { return I18N.translate(state.lang, key, vars); }

  function tn(key, n, vars) { return t(L.countKey(key, n), Object.assign({ n: n }, vars || {})); }

  function threshold() { return state.threshold; }

  var service = window.CrossrankService.create(t, function () { return el.apiKey.value.trim(); });
  var ServiceError = service.ServiceError;
  var table = window.CrossrankTable.create(el.rawTable, function () { return state.run; }, threshold, t);

  function loadInfo() {
    service.info().then(function (info) {
      if (!info) return;   // the header keeps its dashes; the rerank itself reports errors
      if (info.model) el.infoModel.textContent = info.model;
      if (info.device) el.infoDevice.textContent = info.device;
      if (info.dtype) el.infoDtype.textContent = info.dtype;
    });
  }

  /** Called by the slider and by the number box; each mirrors the other. */
  function setThreshold(value, from) {
    state.threshold = value;
    if (from !== el.threshold) el.threshold.value = String(value);
    if (from !== el.thresholdNumber) el.thresholdNumber.value = L.thresholdText(value);
    applyThreshold();
  }

  /** The number box: a value out of range is clamped and said so; text that is no number keeps the last value. */
  function onThresholdTyped() {
    var parsed = L.parseThreshold(el.thresholdNumber.value, threshold());
    var problem = parsed.error === "range" ? "thresholdRange" : parsed.error === "number" ? "thresholdNumber" : "";
    el.thresholdError.textContent = problem ? t(problem, { t: L.thresholdText(parsed.value) }) : "";
    el.thresholdError.hidden = !problem;
    el.thresholdNumber.setAttribute("aria-invalid", problem ? "true" : "false");
    setThreshold(parsed.value, el.thresholdNumber);
  }

  /** Leaving the box shows the value in force, so what it says is what applies. */
  function onThresholdLeft() {
    el.thresholdNumber.value = L.thresholdText(threshold());
    el.thresholdError.hidden = true;
    el.thresholdNumber.setAttribute("aria-invalid", "false");
  }

  // ---------- rendering ----------

  function setBusy(busy, count) {
    state.busy = busy;
    el.rerank.disabled = busy;
    el.form.classList.toggle("busy", busy);
    el.results.setAttribute("aria-busy", busy ? "true" : "false");
    if (busy) {
      el.status.textContent = tn("working", count);
      markStale(true);
    }
  }

  /** Dims the results (and says so) while they do not answer the inputs as they stand. */
  function markStale(stale) {
    var on = Boolean(stale && state.run);
    el.results.classList.toggle("stale", on);
    el.stale.hidden = !on;
    el.stale.textContent = on ? t("stale") : "";
  }

  function inputsChanged() {
    return !state.run || el.query.value.trim() !== state.run.query || el.docs.value !== state.run.docsText;
  }

  function showError(message, fixedBy) {
    el.error.textContent = message;
    el.error.hidden = !message;
    state.errorFor = message ? fixedBy || null : null;
  }

  /** An edit of the field the error is about takes the error away (a missing query: once there is one). */
  function clearErrorOn(field) {
    var e = state.errorFor;
    if (!e) return;
    if (e === "query" && field === "query" && el.query.value.trim()) showError("");
    else if (e === "docs" && field === "docs" && L.parseCandidates(el.docs.value).docs.length) showError("");
    else if (e === "key" && field === "key") showError("");
    else if (e === "input" && (field === "query" || field === "docs")) showError("");
  }

  function verdictBadge() {
    var badge = node("span", "verdict");
    badge.append(node("span", "verdict-icon"), node("span", "verdict-word"));
    badge.firstChild.setAttribute("aria-hidden", "true");
    return badge;
  }

  function setVerdict(badge, isAbove) {
    badge.firstChild.textContent = isAbove ? "▲" : "▼";
    badge.lastChild.textContent = isAbove ? t("above") : t("below");
    badge.title = isAbove ? t("aboveLong") : t("belowLong");
  }

  function fillPassage(target, row, pattern, expanded) {
    var view = L.passageView(row.text, row.span, COLLAPSE_AT, expanded);
    target.replaceChildren();
    if (view.before) target.appendChild(node("span", "elided", "… "));
    view.pieces.forEach(function (piece) {
      var part = node("span", piece.read ? "read" : "unread");
      D.appendHighlighted(part, piece.text, pattern);
      target.appendChild(part);
    });
    if (view.after) target.appendChild(node("span", "elided", " …"));
    return view;
  }

  function buildCard(row, pattern) {
    var li = node("li", "card");
    li.dataset.index = String(row.index);
    var head = node("div", "card-head");
    var rank = node("span", "rank", "#" + row.rank);
    rank.title = t("rank");
    head.append(rank, node("span", "score", L.fmt(row.score, 4)), verdictBadge(),
      node("span", "raw", t("raw") + " " + L.fmt(row.raw, 4)), node("span", "line", t("line", { n: row.line })));
    var bar = node("div", "bar");
    var fill = node("span", "bar-fill");
    // CSSOM, not a style attribute: allowed under the page's style-src 'self'.
    fill.style.width = (Math.max(0, Math.min(1, row.score)) * 100).toFixed(2) + "%";
    bar.appendChild(fill);
    var passage = node("p", "passage");
    passage.dir = "auto";
    var view = fillPassage(passage, row, pattern, state.expanded.has(row.index));
    li.append(head, bar, passage);
    var note = L.readNote(row.span, view.length);
    if (note) li.appendChild(node("p", "read-note", t(note.key, note.vars)));
    if (view.collapsible) {
      var toggle = node("button", "secondary more-text");
      toggle.type = "button";
      var sync = function () {
        var open = state.expanded.has(row.index);
        toggle.textContent = open ? t("collapse") : t("expand");
        toggle.setAttribute("aria-expanded", open ? "true" : "false");
      };
      toggle.addEventListener("click", function () {
        if (state.expanded.has(row.index)) state.expanded.delete(row.index); else state.expanded.add(row.index);
        fillPassage(passage, row, pattern, state.expanded.has(row.index));
        sync();
      });
      sync();
      li.appendChild(toggle);
    }
    return li;
  }

  /** Recolour, re-badge (and optionally hide) cards and move the divider; cheap enough for every slider move. */
  function applyThreshold() {
    var th = threshold();
    D.storageSet("localStorage", "crossrank.threshold", String(th));
    if (!state.run) return;
    var hide = el.hideBelow.checked, rows = state.run.rows;
    var above = L.aboveCount(rows, th);
    state.cardEls.forEach(function (card, i) {
      var isAbove = i < above;
      card.classList.toggle("above", isAbove);
      card.classList.toggle("below", !isAbove);
      card.hidden = hide && !isAbove;
      setVerdict(card.querySelector(".verdict"), isAbove);
    });
    placeDivider(above, th);
    // While a request runs the status says so; it must not go back to describing the old results.
    if (!state.busy) {
      el.status.textContent = tn("status", rows.length, { ms: state.run.ms, above: above, t: L.thresholdText(th) });
    }
    if (!el.raw.hidden) table.updateVerdicts(th);
  }

  /** The divider sits where the threshold falls among the shown cards (not shown when it falls further down). */
  function placeDivider(above, th) {
    var divider = state.divider;
    if (!divider) {
      divider = state.divider = node("li", "divider");
      divider.setAttribute("role", "separator");
    }
    divider.textContent = t("divider", { t: L.thresholdText(th) });
    divider.setAttribute("aria-label", divider.textContent);
    if (above > state.cardEls.length || (above === state.cardEls.length && above < state.run.rows.length)) {
      divider.remove();
      return;
    }
    el.cards.insertBefore(divider, state.cardEls[above] || null);
  }

  function renderCards() {
    var run = state.run;
    var pattern = L.termPattern(L.queryTerms(run.query));
    var frag = document.createDocumentFragment();
    state.cardEls = run.rows.slice(0, state.shown).map(function (row) {
      var card = buildCard(row, pattern);
      frag.appendChild(card);
      return card;
    });
    el.cards.replaceChildren(frag);
    el.empty.hidden = run.rows.length > 0;
    var left = run.rows.length - state.cardEls.length;
    el.more.hidden = left <= 0;
    el.more.textContent = left === 1 ? t("showMore1") : t("showMore", { n: Math.min(PAGE, left), left: left });
    if (!el.raw.hidden) table.render();
    applyThreshold();
  }

  // ---------- actions ----------

  /** Score the inputs; after the page's sentences are in, since every message it shows is one of them. */
  function submit() { I18N.load().then(submitNow); }

  function submitNow() {
    if (state.busy) return;
    var query = el.query.value.trim();
    var docsText = el.docs.value;
    var parsed = L.parseCandidates(docsText);
    if (!query) { showError(t("needQuery"), "query"); el.query.focus(); return; }
    if (!parsed.docs.length) { showError(t("needDocs"), "docs"); el.docs.focus(); return; }
    showError("");
    setBusy(true, parsed.docs.length);
    D.reveal(el.status, el.results);
    var started = performance.now();
    service.score(query, parsed.docs).then(function (answer) {
      var rows = answer.results.map(function (r, i) {
        return {
          rank: i + 1, index: r.index, line: parsed.lines[r.index], text: parsed.docs[r.index],
          score: r.relevance_score, raw: r.raw_score, span: r.read_span || null
        };
      });
      state.run = { query: query, docsText: docsText, model: answer.model || null,
        ms: Math.round(performance.now() - started), rows: rows };
      state.shown = PAGE;
      state.expanded = new Set();
      if (typeof answer.model === "string") el.infoModel.textContent = answer.model;
      state.busy = false;
      renderCards();
    }).catch(function (err) {
      var known = err instanceof ServiceError;
      showError(known ? err.message : t("eShape"), known ? err.fixedBy : null);
      el.status.textContent = "";
      if (known && err.status === 401) openKey();
      if (!known) console.warn(err);
      D.reveal(el.error, el.results);
    }).then(function () {
      setBusy(false);
      markStale(inputsChanged() || !el.error.hidden);
      if (state.run && el.error.hidden) applyThreshold();
    });
  }

  function openKey() {
    el.keyDetails.open = true;
    el.apiKey.focus();
  }

  function applyLanguage(lang) {
    state.lang = lang === "zh" ? "zh" : "en";
    document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
    document.title = t("title");
    document.querySelectorAll("[data-i18n]").forEach(function (e) { e.textContent = t(e.dataset.i18n); });
    document.querySelectorAll("[data-i18n-placeholder]").forEach(function (e) {
      e.placeholder = t(e.dataset.i18nPlaceholder);
    });
    el.lang.textContent = state.lang === "zh" ? "English" : "中文";
    D.storageSet("localStorage", "crossrank.lang", state.lang);
    nameExamples();
    updateLineCount();
    if (!el.stale.hidden) el.stale.textContent = t("stale");
    if (!el.thresholdError.hidden) onThresholdTyped();
    if (state.run) renderCards();
  }

  function updateLineCount() {
    var n = L.parseCandidates(el.docs.value).docs.length;
    el.lineCount.textContent = n ? "· " + tn("lines", n) : "";
  }

  function nameExamples() {
    Array.from(el.example.options).forEach(function (opt) {
      var c = state.examples[parseInt(opt.value, 10)];
      if (c) opt.textContent = I18N.exampleName(state.lang, c.name);
    });
  }

  function loadExamples() {
    fetch("examples.json").then(function (resp) { return resp.ok ? resp.json() : null; }).then(function (data) {
      if (!data || !Array.isArray(data.cases)) return;
      state.examples = data.cases;
      data.cases.forEach(function (c, i) {
        var opt = node("option", null, c.name);
        opt.value = String(i);
        el.example.appendChild(opt);
      });
      nameExamples();
    }).catch(function () { /* no examples: the loader stays empty */ });
  }

  function onInputEdited(field) {
    clearErrorOn(field);
    if (field !== "key" && !state.busy) markStale(inputsChanged());
  }

  function wireTable() {
    el.rawToggle.addEventListener("click", function () {
      var open = el.raw.hidden;
      el.raw.hidden = !open;
      el.rawToggle.setAttribute("aria-expanded", open ? "true" : "false");
      if (open) table.render();
    });
    el.rawTable.querySelectorAll("th[data-key] button").forEach(function (button) {
      button.addEventListener("click", function () { table.sortBy(button.parentElement.dataset.key); });
    });
    el.exportCsv.addEventListener("click", table.exportCsv);
    el.exportJson.addEventListener("click", table.exportJson);
  }

  function init() {
    var lang = D.storageGet("localStorage", "crossrank.lang") ||
      ((navigator.language || "").toLowerCase().indexOf("zh") === 0 ? "zh" : "en");
    var savedTh = L.parseThreshold(D.storageGet("localStorage", "crossrank.threshold") || "", 0.5);
    if (!savedTh.error) state.threshold = savedTh.value;
    el.threshold.value = String(state.threshold);
    el.thresholdNumber.value = L.thresholdText(state.threshold);
    el.apiKey.value = D.storageGet("sessionStorage", "crossrank.apiKey") || "";
    state.lang = lang === "zh" ? "zh" : "en";  // the page's sentences follow once i18n.json is in (at the end)
    applyThreshold();

    el.form.addEventListener("submit", function (e) { e.preventDefault(); submit(); });
    document.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); submit(); }
    });
    el.threshold.addEventListener("input", function () {
      onThresholdLeft();
      setThreshold(parseFloat(el.threshold.value), el.threshold);
    });
    el.thresholdNumber.addEventListener("input", onThresholdTyped);
    el.thresholdNumber.addEventListener("change", onThresholdLeft);
    el.hideBelow.addEventListener("change", applyThreshold);
    el.query.addEventListener("input", function () { onInputEdited("query"); });
    el.docs.addEventListener("input", function () { updateLineCount(); onInputEdited("docs"); });
    el.apiKey.addEventListener("input", function () { onInputEdited("key"); });
    el.apiKey.addEventListener("change", function () {
      D.storageSet("sessionStorage", "crossrank.apiKey", el.apiKey.value.trim());
      loadInfo();
    });
    el.lang.addEventListener("click", function () { applyLanguage(state.lang === "zh" ? "en" : "zh"); });
    el.example.addEventListener("change", function () {
      var c = state.examples[parseInt(el.example.value, 10)];
      if (!c) return;
      el.query.value = c.query;
      el.docs.value = c.passages.map(function (p) { return String(p).replace(/\s*[\r\n]+\s*/g, " "); }).join("\n");
      updateLineCount();
      onInputEdited("query");
      onInputEdited("docs");
    });
    el.more.addEventListener("click", function () {
      state.shown += PAGE;
      renderCards();
    });
    wireTable();
    I18N.load().then(function () {
      applyLanguage(state.lang);
      loadInfo();
      loadExamples();
    });
  }

  init();
})();
