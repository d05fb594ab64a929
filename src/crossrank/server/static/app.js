/* crossrank web page: talks to the service's own API (/v1/rerank with raw_scores, /info).
 * Safety rule for this file: user text (queries, passages, error details) only ever reaches the page through
 * textContent or text nodes — never parsed as markup — so hostile passages show literally and run nothing. */
(function () {
  "use strict";

  var I18N = {
    en: {
      skip: "Skip to results", subtitle: "rerank playground", model: "Model", device: "Device", dtype: "Dtype",
      input: "Input", query: "Query", queryPlaceholder: "A question, an instruction, anything",
      candidates: "Candidates", onePerLine: "one passage per line", candidatesPlaceholder: "One passage per line",
      lines: "{n} passages", examples: "Examples", pickExample: "Load an example…", apiKey: "API key",
      apiKeyPlaceholder: "only if the service has one", apiKeyNote: "Kept in this browser tab only (sessionStorage).",
      rerank: "Rerank", results: "Results", threshold: "Threshold", thresholdExact: "Exact threshold", hideBelow: "hide at or below",
      rawData: "Raw data", exportCsv: "Export CSV", exportJson: "Export JSON", colId: "ID (line)", colText: "Text",
      colRaw: "Raw score", colScore: "Normalised", emptyState: "Type a query and some candidates, then press Rerank.",
      rank: "Rank", raw: "raw", line: "line {n}", above: "above threshold", below: "at or below threshold",
      status: "{n} results in {ms} ms · {above} above {t}", working: "Scoring {n} passages…",
      needQuery: "Please type a query.", needDocs: "Please add at least one candidate (one per line).",
      e401: "The service refused the API key (401). Enter the right key under “API key”.",
      e413: "Too much input for the service (413). Send fewer or shorter passages.",
      e422: "The service could not accept this input (422).",
      e429: "The service is busy (429). Try again in a moment.", retryAfter: "Try again in {s} s.",
      e503: "The model is not ready yet (503). Try again in a moment.",
      e400: "The service rejected the request (400).", e5xx: "The service failed ({status}).",
      eOther: "Unexpected answer from the service ({status}).",
      eNetwork: "Cannot reach the service. Is `crossrank serve` still running?",
      eShape: "The service answered in an unexpected format.", detail: "Details: {d}",
      eKeyChars: "The API key may only contain visible ASCII characters (no spaces or accents)."
    },
    zh: {
      skip: "跳到结果", subtitle: "重排序试验台", model: "模型", device: "设备", dtype: "精度",
      input: "输入", query: "查询", queryPlaceholder: "问题、指令，怎么写都可以",
      candidates: "候选文本", onePerLine: "每行一段", candidatesPlaceholder: "每行一段候选文本",
      lines: "{n} 段", examples: "示例", pickExample: "载入示例…", apiKey: "API 密钥",
      apiKeyPlaceholder: "服务设置了密钥时才需要", apiKeyNote: "只保存在当前标签页（sessionStorage）。",
      rerank: "重排序", results: "结果", threshold: "阈值", thresholdExact: "精确阈值", hideBelow: "隐藏不高于阈值的",
      rawData: "原始数据", exportCsv: "导出 CSV", exportJson: "导出 JSON", colId: "编号（行）", colText: "文本",
      colRaw: "原始分数", colScore: "归一化分数", emptyState: "输入查询和候选文本，然后点击“重排序”。",
      rank: "名次", raw: "原始", line: "第 {n} 行", above: "高于阈值", below: "不高于阈值",
      status: "{n} 条结果，用时 {ms} 毫秒 · {above} 条高于 {t}", working: "正在为 {n} 段文本打分…",
      needQuery: "请输入查询。", needDocs: "请至少输入一段候选文本（每行一段）。",
      e401: "服务拒绝了 API 密钥（401）。请在“API 密钥”中填写正确的密钥。",
      e413: "输入超出服务的限制（413）。请减少段数或缩短文本。",
      e422: "服务无法接受这些输入（422）。",
      e429: "服务繁忙（429），请稍后再试。", retryAfter: "请在 {s} 秒后重试。",
      e503: "模型尚未就绪（503），请稍后再试。",
      e400: "服务拒绝了请求（400）。", e5xx: "服务出错（{status}）。",
      eOther: "服务返回了意外的状态（{status}）。",
      eNetwork: "无法连接服务。`crossrank serve` 还在运行吗？",
      eShape: "服务返回的格式无法识别。", detail: "详情：{d}",
      eKeyChars: "API 密钥只能包含可见的 ASCII 字符（不能有空格或中文）。"
    }
  };

  // Frequent words that would light up every passage; Chinese queries are matched by n-grams, see queryTerms.
  var EN_STOP = new Set(("a an and are as at be by can do does for from how i in is it its of on or that the this to " +
    "was what when where which who why with you your").split(" "));
  var ZH_STOP = new Set(["怎么", "什么", "如何", "哪些", "哪里", "是否", "可以", "的是", "一个", "我们", "需要"]);
  var ZH_STOP_CHAR = new Set("的是了在和与及或吗呢啊把被也就都而".split(""));
  var CJK_RUN = /[\p{sc=Han}\p{sc=Hiragana}\p{sc=Katakana}]+/u;
  var TOKEN = /[\p{sc=Han}\p{sc=Hiragana}\p{sc=Katakana}]+|[^\s\p{P}\p{S}\p{sc=Han}\p{sc=Hiragana}\p{sc=Katakana}]+/gu;
  var MAX_NGRAM = 6;
  var MAX_TERMS = 300;

  var $ = function (id) { return document.getElementById(id); };
  var el = {
    form: $("form"), query: $("query"), docs: $("documents"), lineCount: $("line-count"), example: $("example"),
    apiKey: $("api-key"), rerank: $("rerank"), results: $("results"), threshold: $("threshold"),
    thresholdNumber: $("threshold-number"), hideBelow: $("hide-below"), rawToggle: $("raw-toggle"), raw: $("raw"),
    rawTable: $("raw-table"), status: $("status"), error: $("error"), cards: $("cards"), empty: $("empty"),
    lang: $("lang"), infoModel: $("info-model"), infoDevice: $("info-device"), infoDtype: $("info-dtype"),
    exportCsv: $("export-csv"), exportJson: $("export-json")
  };

  var state = {
    lang: "en",
    busy: false,
    run: null,          // {query, model, ms, rows: [{rank, index, line, text, score, raw}]} of the last success
    cardEls: [],        // card <li> per row of state.run.rows, for live recolouring
    threshold: 0.5,     // the number box may hold more precision than the slider's steps
    sort: { key: "score", dir: "descending" },
    examples: []
  };

  // ---------- small helpers ----------

  function t(key, vars) {
    var s = (I18N[state.lang] && I18N[state.lang][key]) || I18N.en[key] || key;
    if (vars) {
      Object.keys(vars).forEach(function (k) { s = s.split("{" + k + "}").join(String(vars[k])); });
    }
    return s;
  }

  function node(tag, className, text) {
    var e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function fmt(x, digits) {
    return (typeof x === "number" && isFinite(x)) ? x.toFixed(digits) : "—";
  }

  function threshold() { return state.threshold; }

  function thresholdText(x) { return String(Math.round(x * 10000) / 10000); }

  /** Called by the slider and by the number box; each mirrors the other. */
  function setThreshold(value, from) {
    if (!isFinite(value) || value < 0 || value > 1) return;
    state.threshold = value;
    if (from !== el.threshold) el.threshold.value = String(value);
    if (from !== el.thresholdNumber) el.thresholdNumber.value = thresholdText(value);
    applyThreshold();
  }

  function storageGet(store, key) {
    try { return window[store].getItem(key); } catch (e) { return null; }
  }
  function storageSet(store, key, value) {
    try {
      if (value) window[store].setItem(key, value); else window[store].removeItem(key);
    } catch (e) { /* private mode: the page still works, it just forgets */ }
  }

  // Blank lines are skipped; every passage keeps the number of the input line it came from (its ID).
  function parseCandidates(text) {
    var docs = [], lines = [];
    text.split(/\r\n|\n|\r/).forEach(function (line, i) {
      var s = line.trim();
      if (s) { docs.push(s); lines.push(i + 1); }
    });
    return { docs: docs, lines: lines };
  }

  // ---------- query-term highlighting ----------

  /** Terms to highlight: words of 2+ letters for spaced scripts, n-grams (2..6) for Chinese/Japanese runs. */
  function queryTerms(query) {
    var terms = new Set();
    var m;
    TOKEN.lastIndex = 0;
    while ((m = TOKEN.exec(query)) !== null) {
      var run = m[0];
      if (CJK_RUN.test(run)) {
        var chars = Array.from(run);
        if (chars.length === 1) {
          if (!ZH_STOP_CHAR.has(run)) terms.add(run);
          continue;
        }
        for (var n = 2; n <= Math.min(MAX_NGRAM, chars.length); n++) {
          for (var i = 0; i + n <= chars.length; i++) {
            var gram = chars.slice(i, i + n).join("");
            if (!ZH_STOP.has(gram)) terms.add(gram);
          }
        }
      } else {
        var w = run.toLowerCase();
        if (Array.from(w).length >= 2 && !EN_STOP.has(w)) terms.add(w);
      }
    }
    return Array.from(terms).sort(function (a, b) { return b.length - a.length; }).slice(0, MAX_TERMS);
  }

  function escapeRegExp(s) { return s.replace(/[.*+?^${}()|[\]\\\/-]/g, "\\$&"); }

  /** One regex, longest terms first so the longest match wins; spaced words match from a word start (plurals too). */
  function termPattern(terms) {
    if (!terms.length) return null;
    var parts = terms.map(function (term) {
      return CJK_RUN.test(term) ? escapeRegExp(term) : "(?<![\\p{L}\\p{N}])" + escapeRegExp(term);
    });
    return new RegExp(parts.join("|"), "giu");
  }

  /** Fills `target` with text nodes and <mark> elements; never parses `text` as HTML. */
  function appendHighlighted(target, text, pattern) {
    if (!pattern) { target.textContent = text; return; }
    var last = 0, m;
    pattern.lastIndex = 0;
    while ((m = pattern.exec(text)) !== null) {
      if (m.index > last) target.appendChild(document.createTextNode(text.slice(last, m.index)));
      target.appendChild(node("mark", null, m[0]));
      last = m.index + m[0].length;
    }
    if (last < text.length) target.appendChild(document.createTextNode(text.slice(last)));
  }

  // ---------- talking to the service ----------

  function authHeaders() {
    var headers = { "Content-Type": "application/json", "Accept": "application/json" };
    var key = el.apiKey.value.trim();
    // HTTP headers carry only visible ASCII; fetch would throw a bare TypeError for anything else.
    if (/[^\x21-\x7e]/.test(key)) throw new ServiceError(t("eKeyChars"), 0);
    if (key) headers.Authorization = "Bearer " + key;
    return headers;
  }

  function ServiceError(message, status) { this.message = message; this.status = status; }

  /** The most useful sentence in an error body: TEI {error}, FastAPI {detail: str | [{loc, msg}]}, or {message}. */
  function errorDetail(body) {
    if (!body || typeof body !== "object") return typeof body === "string" ? body : "";
    var d = body.error !== undefined ? body.error : body.detail !== undefined ? body.detail : body.message;
    if (d && typeof d === "object" && !Array.isArray(d)) d = d.message || d.msg || JSON.stringify(d);
    if (Array.isArray(d)) {
      d = d.map(function (item) {
        if (item && typeof item === "object") {
          var loc = Array.isArray(item.loc) ? item.loc.filter(function (p) { return p !== "body"; }).join(".") : "";
          return (loc ? loc + ": " : "") + (item.msg || JSON.stringify(item));
        }
        return String(item);
      }).join("; ");
    }
    return d === undefined || d === null ? "" : String(d).slice(0, 500);
  }

  function describeFailure(status, body, headers) {
    var key = { 400: "e400", 401: "e401", 403: "e401", 413: "e413", 422: "e422", 429: "e429", 503: "e503" }[status];
    var msg = key ? t(key) : (status >= 500 ? t("e5xx", { status: status }) : t("eOther", { status: status }));
    var retry = headers.get("Retry-After");
    if (status === 429 && retry) msg += " " + t("retryAfter", { s: retry });
    var detail = errorDetail(body);
    // 401 bodies never echo the key, but there is nothing more useful in them than our own sentence.
    if (detail && status !== 401) msg += " " + t("detail", { d: detail });
    return msg;
  }

  function postJson(path, payload) {
    var headers;
    try { headers = authHeaders(); } catch (err) { return Promise.reject(err); }
    return fetch(path, { method: "POST", headers: headers, body: JSON.stringify(payload) })
      .catch(function () { throw new ServiceError(t("eNetwork"), 0); })
      .then(function (resp) {
        return resp.text().then(function (text) {
          var body = null;
          try { body = text ? JSON.parse(text) : null; } catch (e) { body = text; }
          if (!resp.ok) throw new ServiceError(describeFailure(resp.status, body, resp.headers), resp.status);
          return body;
        });
      });
  }

  /** Normalised scores and raw logits in one /v1/rerank answer (crossrank's raw_scores extension). */
  function score(query, docs) {
    var body = { query: query, documents: docs, return_documents: false, raw_scores: true };
    return postJson("v1/rerank", body).then(function (v1) {
      var ok = v1 && Array.isArray(v1.results) &&
        v1.results.every(function (r) { return typeof r.raw_score === "number"; });
      if (!ok) throw new ServiceError(t("eShape"), 200);
      return v1;
    });
  }

  function loadInfo() {
    var headers;
    try { headers = authHeaders(); } catch (err) { return; }
    fetch("info", { headers: headers }).then(function (resp) {
      return resp.ok ? resp.json() : null;
    }).then(function (info) {
      if (!info) return;
      var model = info.model_id || info.model || info.id;
      if (model && typeof model === "object") model = model.id || model.name;
      if (typeof model === "string") el.infoModel.textContent = model;
      // crossrank's /info says model_device / model_dtype (TEI's names); plain device / dtype are accepted too.
      var device = info.model_device || info.device, dtype = info.model_dtype || info.dtype;
      if (typeof device === "string") el.infoDevice.textContent = device;
      if (typeof dtype === "string") el.infoDtype.textContent = dtype;
    }).catch(function () { /* the header keeps its dashes; the rerank itself reports errors */ });
  }

  // ---------- rendering ----------

  function setBusy(busy, count) {
    state.busy = busy;
    el.rerank.disabled = busy;
    el.form.classList.toggle("busy", busy);
    el.results.setAttribute("aria-busy", busy ? "true" : "false");
    if (busy) el.status.textContent = t("working", { n: count });
  }

  function showError(message) {
    el.error.textContent = message;
    el.error.hidden = !message;
  }

  function buildCard(row, pattern) {
    var li = node("li", "card");
    li.dataset.index = String(row.index);
    var head = node("div", "card-head");
    var rank = node("span", "rank", "#" + row.rank);
    rank.title = t("rank");
    var scoreEl = node("span", "score", fmt(row.score, 4));
    var verdict = node("span", "visually-hidden verdict");
    var raw = node("span", "raw", t("raw") + " " + fmt(row.raw, 4));
    var line = node("span", "line", t("line", { n: row.line }));
    head.append(rank, scoreEl, verdict, raw, line);
    var bar = node("div", "bar");
    var fill = node("span", "bar-fill");
    // CSSOM, not a style attribute: allowed under the page's style-src 'self'.
    fill.style.width = (Math.max(0, Math.min(1, row.score)) * 100).toFixed(2) + "%";
    bar.appendChild(fill);
    var passage = node("p", "passage");
    appendHighlighted(passage, row.text, pattern);
    li.append(head, bar, passage);
    return li;
  }

  /** Recolour (and optionally hide) cards for the current threshold; cheap enough to run on every slider move. */
  function applyThreshold() {
    var th = threshold();
    storageSet("localStorage", "crossrank.threshold", String(th));
    if (!state.run) return;
    var hide = el.hideBelow.checked, above = 0;
    state.run.rows.forEach(function (row, i) {
      var card = state.cardEls[i];
      var isAbove = row.score > th;
      if (isAbove) above++;
      card.classList.toggle("above", isAbove);
      card.classList.toggle("below", !isAbove);
      card.hidden = hide && !isAbove;
      card.firstChild.children[2].textContent = isAbove ? t("above") : t("below");
    });
    el.status.textContent = t("status", { n: state.run.rows.length, ms: state.run.ms, above: above, t: thresholdText(th) });
  }

  function renderCards() {
    var run = state.run;
    var pattern = termPattern(queryTerms(run.query));
    var frag = document.createDocumentFragment();
    state.cardEls = run.rows.map(function (row) {
      var card = buildCard(row, pattern);
      frag.appendChild(card);
      return card;
    });
    el.cards.replaceChildren(frag);
    el.empty.hidden = run.rows.length > 0;
    applyThreshold();
    if (!el.raw.hidden) renderTable();
  }

  function sortedRows() {
    var key = state.sort.key, sign = state.sort.dir === "ascending" ? 1 : -1;
    return state.run.rows.slice().sort(function (a, b) {
      var x = a[key], y = b[key];
      var c = typeof x === "string" ? x.localeCompare(y) : x - y;
      return c !== 0 ? sign * c : a.rank - b.rank;
    });
  }

  function renderTable() {
    var tbody = el.rawTable.tBodies[0];
    el.rawTable.querySelectorAll("th").forEach(function (th) {
      th.setAttribute("aria-sort", th.dataset.key === state.sort.key ? state.sort.dir : "none");
    });
    if (!state.run) { tbody.replaceChildren(); return; }
    var frag = document.createDocumentFragment();
    sortedRows().forEach(function (row) {
      var tr = node("tr");
      tr.dataset.index = String(row.index);
      tr.append(node("td", "num", row.line), node("td", "text", row.text), node("td", "num", fmt(row.raw, 6)),
        node("td", "num", fmt(row.score, 6)));
      frag.appendChild(tr);
    });
    tbody.replaceChildren(frag);
  }

  // ---------- export ----------

  function exportRows() {
    return state.run ? state.run.rows.map(function (r) {
      return { rank: r.rank, id: r.line, index: r.index, text: r.text, raw_score: r.raw, relevance_score: r.score };
    }) : [];
  }

  function csvCell(value) {
    var s = value === null || value === undefined ? "" : String(value);
    // A text cell starting with = + - @ would run as a formula in a spreadsheet; a leading quote keeps it text.
    if (typeof value === "string" && /^[=+\-@\t\r]/.test(s)) s = "'" + s;
    return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }

  function download(name, type, content) {
    var url = URL.createObjectURL(new Blob([content], { type: type }));
    var a = node("a");
    a.href = url;
    a.download = name;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 1000);
  }

  function exportCsv() {
    if (!state.run) return;
    var cols = ["rank", "id", "index", "text", "raw_score", "relevance_score"];
    var lines = [cols.join(",")].concat(exportRows().map(function (r) {
      return cols.map(function (c) { return csvCell(r[c]); }).join(",");
    }));
    // The BOM makes spreadsheet programs read Chinese text as UTF-8.
    download("crossrank-results.csv", "text/csv;charset=utf-8", "\ufeff" + lines.join("\r\n") + "\r\n");
  }

  function exportJson() {
    if (!state.run) return;
    var doc = { query: state.run.query, model: state.run.model, threshold: threshold(), results: exportRows() };
    download("crossrank-results.json", "application/json", JSON.stringify(doc, null, 2) + "\n");
  }

  // ---------- actions ----------

  function submit() {
    if (state.busy) return;
    var query = el.query.value.trim();
    var parsed = parseCandidates(el.docs.value);
    if (!query) { showError(t("needQuery")); el.query.focus(); return; }
    if (!parsed.docs.length) { showError(t("needDocs")); el.docs.focus(); return; }
    showError("");
    setBusy(true, parsed.docs.length);
    var started = performance.now();
    score(query, parsed.docs).then(function (answer) {
      var rows = answer.results.map(function (r, i) {
        return {
          rank: i + 1, index: r.index, line: parsed.lines[r.index], text: parsed.docs[r.index],
          score: r.relevance_score, raw: r.raw_score
        };
      });
      state.run = { query: query, model: answer.model || null, ms: Math.round(performance.now() - started), rows: rows };
      if (typeof answer.model === "string") el.infoModel.textContent = answer.model;
      renderCards();
    }).catch(function (err) {
      showError(err instanceof ServiceError ? err.message : t("eShape"));
      el.status.textContent = "";
      if (!(err instanceof ServiceError)) console.warn(err);
    }).then(function () {
      setBusy(false);
      if (state.run) applyThreshold();
    });
  }

  function applyLanguage(lang) {
    state.lang = I18N[lang] ? lang : "en";
    document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
    document.querySelectorAll("[data-i18n]").forEach(function (e) { e.textContent = t(e.dataset.i18n); });
    document.querySelectorAll("[data-i18n-placeholder]").forEach(function (e) {
      e.placeholder = t(e.dataset.i18nPlaceholder);
    });
    el.lang.textContent = state.lang === "zh" ? "English" : "中文";
    storageSet("localStorage", "crossrank.lang", state.lang);
    updateLineCount();
    if (state.run) renderCards();
  }

  function updateLineCount() {
    var n = parseCandidates(el.docs.value).docs.length;
    el.lineCount.textContent = n ? "· " + t("lines", { n: n }) : "";
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
    }).catch(function () { /* no examples: the loader stays empty */ });
  }

  function init() {
    var lang = storageGet("localStorage", "crossrank.lang") ||
      ((navigator.language || "").toLowerCase().indexOf("zh") === 0 ? "zh" : "en");
    var savedTh = parseFloat(storageGet("localStorage", "crossrank.threshold"));
    if (isFinite(savedTh) && savedTh >= 0 && savedTh <= 1) state.threshold = savedTh;
    el.threshold.value = String(state.threshold);
    el.thresholdNumber.value = thresholdText(state.threshold);
    el.apiKey.value = storageGet("sessionStorage", "crossrank.apiKey") || "";
    applyLanguage(lang);
    applyThreshold();

    el.form.addEventListener("submit", function (e) { e.preventDefault(); submit(); });
    document.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); submit(); }
    });
    el.threshold.addEventListener("input", function () { setThreshold(parseFloat(el.threshold.value), el.threshold); });
    el.thresholdNumber.addEventListener("input", function () {
      setThreshold(parseFloat(el.thresholdNumber.value), el.thresholdNumber);
    });
    el.hideBelow.addEventListener("change", applyThreshold);
    el.docs.addEventListener("input", updateLineCount);
    el.apiKey.addEventListener("change", function () {
      storageSet("sessionStorage", "crossrank.apiKey", el.apiKey.value.trim());
      loadInfo();
    });
    el.lang.addEventListener("click", function () { applyLanguage(state.lang === "zh" ? "en" : "zh"); });
    el.example.addEventListener("change", function () {
      var c = state.examples[parseInt(el.example.value, 10)];
      if (!c) return;
      el.query.value = c.query;
      el.docs.value = c.passages.map(function (p) { return String(p).replace(/\s*[\r\n]+\s*/g, " "); }).join("\n");
      updateLineCount();
    });
    el.rawToggle.addEventListener("click", function () {
      var open = el.raw.hidden;
      el.raw.hidden = !open;
      el.rawToggle.setAttribute("aria-expanded", open ? "true" : "false");
      if (open) renderTable();
    });
    el.rawTable.querySelectorAll("th button").forEach(function (button) {
      button.addEventListener("click", function () {
        var key = button.parentElement.dataset.key;
        if (state.sort.key === key) {
          state.sort.dir = state.sort.dir === "ascending" ? "descending" : "ascending";
        } else {
          state.sort = { key: key, dir: key === "score" || key === "raw" ? "descending" : "ascending" };
        }
        renderTable();
      });
    });
    el.exportCsv.addEventListener("click", exportCsv);
    el.exportJson.addEventListener("click", exportJson);

    loadInfo();
    loadExamples();
  }

  init();
})();
