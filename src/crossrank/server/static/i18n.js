/* crossrank web page: its sentences, in English and Chinese, are in i18n.json (keys ending in 1 are the singular
 * forms; Chinese has none, so it repeats the plural). load() fetches them once, before the page starts. */
(function (root) {
  "use strict";

  var tables = { en: {}, zh: {}, exampleNames: {} };
  var loading = null;

  /** Fetch i18n.json, once: the same promise every call, resolved once the sentences are in. Without them (the file
   *  unreachable) it resolves all the same, and each sentence shows as its key. */
  function load() {
    loading = loading || fetch("i18n.json")
      .then(function (resp) { return resp.ok ? resp.json() : null; })
      .then(function (data) { if (data) tables = data; }, function () {});
    return loading;
  }

  /** The sentence `key` in `lang` (English where it has none), each {name} replaced by vars[name]; numbers are
   *  written the language's way (1,000). */
  function translate(lang, key, vars) {
    var table = tables[lang] || tables.en;
    var s = table[key] || tables.en[key] || key;
    Object.keys(vars || {}).forEach(function (k) {
      var v = vars[k];
      s = s.split("{" + k + "}").join(typeof v === "number" ? v.toLocaleString(lang) : String(v));
    });
    return s;
  }

  /** An example's name (as examples.json spells it, mirroring `crossrank demo`'s cases) in `lang`. */
  function exampleName(lang, name) {
    return (tables.exampleNames[lang] || {})[name] || name;
  }

  root.CrossrankI18n = { load: load, translate: translate, exampleName: exampleName };
})(typeof window !== "undefined" ? window : globalThis);
