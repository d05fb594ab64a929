/* crossrank web page: the pure rules behind what it shows (no DOM), so they can be checked on their own. */
(function (root) {
  "use strict";

  var DECIMALS = 4;
  var SCALE = Math.pow(10, DECIMALS);

  /** A score in whole units of the last shown decimal: what "0.5000" means on screen. */
  function units(x) { return Math.round(x * SCALE); }

  /** Above the threshold as the page shows both: compared at the 4 decimals the cards display, so a score shown as
   *  "0.5000" under a threshold of 0.5 is at-or-below, never green and red at once. */
  function isAbove(score, threshold) { return units(score) > units(threshold); }

  function fmt(x, digits) {
    return (typeof x === "number" && isFinite(x)) ? x.toFixed(digits === undefined ? DECIMALS : digits) : "—";
  }

  function thresholdText(x) { return String(units(x) / SCALE); }

  /** What the threshold box's text means: {value, error}. Out of range is clamped ("range"); text that is not a
   *  number keeps ``current`` ("number"). */
  function parseThreshold(text, current) {
    var s = String(text).trim();
    var n = s === "" ? NaN : Number(s);
    if (!isFinite(n)) return { value: current, error: "number" };
    if (n < 0) return { value: 0, error: "range" };
    if (n > 1) return { value: 1, error: "range" };
    return { value: n, error: null };
  }

  /** How many rows (sorted best first) are above the threshold: the divider goes after them. */
  function aboveCount(rows, threshold) {
    var k = 0;
    while (k < rows.length && isAbove(rows[k].score, threshold)) k++;
    return k;
  }

  /** Blank lines are skipped; every passage keeps the number of the input line it came from (its ID). */
  function parseCandidates(text) {
    var docs = [], lines = [];
    text.split(/\r\n|\n|\r/).forEach(function (line, i) {
      var s = line.trim();
      if (s) { docs.push(s); lines.push(i + 1); }
    });
    return { docs: docs, lines: lines };
  }

  /** The pieces of a passage to show. ``span`` ({start, end} in code points, as the service counts) is what the
   *  model read; pieces outside it are marked unread. Collapsed, a passage longer than ``limit`` code points shows
   *  ``limit`` of them from where the model started reading, with ``before``/``after`` saying something is left out. */
  function passageView(text, span, limit, expanded) {
    var cps = Array.from(text), n = cps.length;
    var start = span ? Math.max(0, Math.min(n, span.start)) : 0;
    var end = span ? Math.max(start, Math.min(n, span.end)) : n;
    var collapsible = n > limit;
    var from = 0, to = n;
    if (collapsible && !expanded) { from = start; to = Math.min(n, start + limit); }
    var pieces = [
      { text: cps.slice(from, Math.min(start, to)).join(""), read: false },
      { text: cps.slice(Math.max(from, start), Math.min(end, to)).join(""), read: true },
      { text: cps.slice(Math.max(from, end), to).join(""), read: false }
    ].filter(function (p) { return p.text.length > 0; });
    return { pieces: pieces, collapsible: collapsible, before: from > 0, after: to < n, length: n };
  }

  /** Which sentence describes how much the model read ({key, vars}), or null when it read the whole passage. */
  function readNote(span, length) {
    if (!span) return null;
    var vars = { start: span.start + 1, end: span.end, total: length, tokens: span.tokens,
      window: span.window + 1, windows: span.windows };
    if (span.windows > 1) return { key: "readWindow", vars: vars };
    if (span.start > 0) return { key: "readTail", vars: vars };
    if (span.end < length) return { key: "readHead", vars: vars };
    return null;
  }

  /** The i18n key for a count: the singular form ``key + "1"`` for exactly one. */
  function countKey(key, n) { return n === 1 ? key + "1" : key; }

  // ---------- query-term highlighting ----------

  // Frequent words that would light up every passage; Chinese queries are matched by n-grams, see queryTerms.
  var EN_STOP = new Set(("a an and are as at be by can do does for from how i in is it its of on or that the this to " +
    "was what when where which who why with you your").split(" "));
  var ZH_STOP = new Set(["怎么", "什么", "如何", "哪些", "哪里", "是否", "可以", "的是", "一个", "我们", "需要"]);
  var ZH_STOP_CHAR = new Set("的是了在和与及或吗呢啊把被也就都而".split(""));
  var CJK_RUN = /[\p{sc=Han}\p{sc=Hiragana}\p{sc=Katakana}]+/u;
  var TOKEN = /[\p{sc=Han}\p{sc=Hiragana}\p{sc=Katakana}]+|[^\s\p{P}\p{S}\p{sc=Han}\p{sc=Hiragana}\p{sc=Katakana}]+/gu;
  var MAX_NGRAM = 6;
  var MAX_TERMS = 300;

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

  root.CrossrankLogic = {
    units: units, isAbove: isAbove, fmt: fmt, thresholdText: thresholdText, parseThreshold: parseThreshold,
    aboveCount: aboveCount, parseCandidates: parseCandidates, passageView: passageView, readNote: readNote,
    countKey: countKey, queryTerms: queryTerms, termPattern: termPattern
  };
})(typeof window !== "undefined" ? window : globalThis);
