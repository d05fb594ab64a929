/* crossrank web page: every sentence it shows, in English and Chinese. Keys ending in 1 are the singular forms
 * (Chinese has none, so it repeats the plural). */
(function (root) {
  "use strict";

  var en = {
    title: "crossrank — rerank playground",
    skip: "Skip to results", subtitle: "rerank playground", model: "Model", device: "Device", dtype: "Dtype",
    input: "Input", query: "Query", queryPlaceholder: "A question, an instruction, anything",
    candidates: "Candidates", onePerLine: "one passage per line", candidatesPlaceholder: "One passage per line",
    lines: "{n} passages", lines1: "1 passage", examples: "Examples", pickExample: "Load an example…",
    apiKey: "API key", apiKeyPlaceholder: "only if the service has one",
    apiKeyNote: "Kept in this browser tab only (sessionStorage).",
    rerank: "Rerank", results: "Results", threshold: "Threshold", thresholdExact: "Exact threshold",
    hideBelow: "hide at or below",
    rawData: "Raw data", exportCsv: "Export CSV", exportJson: "Export JSON", colRank: "Rank", colId: "ID (line)",
    colText: "Text", colRaw: "Raw score", colScore: "Normalised", colVerdict: "Threshold",
    emptyState: "Type a query and some candidates, then press Rerank.",
    rank: "Rank", raw: "raw", line: "line {n}", above: "above", below: "at or below",
    aboveLong: "above the threshold", belowLong: "at or below the threshold",
    divider: "threshold {t}: above it ▲, at or below it ▼",
    status: "{n} results in {ms} ms · {above} above {t}", status1: "1 result in {ms} ms · {above} above {t}",
    working: "Scoring {n} passages…", working1: "Scoring 1 passage…",
    stale: "These results are for an earlier input. Press Rerank to update them.",
    showMore: "Show {n} more ({left} not shown)", showMore1: "Show 1 more",
    expand: "Show more", collapse: "Show less",
    readHead: "The model read characters 1–{end} of {total} ({tokens} tokens); the rest was cut.",
    readTail: "The model read characters {start}–{end} of {total} ({tokens} tokens); the start was cut.",
    readWindow: "Read in {windows} windows; window {window} scored best: characters {start}–{end} of {total} " +
      "({tokens} tokens).",
    thresholdRange: "The threshold is between 0 and 1: using {t}.",
    thresholdNumber: "Type a number from 0 to 1: still using {t}.",
    needQuery: "Please type a query.", needDocs: "Please add at least one candidate (one per line).",
    e401: "The service refused the API key (401). Enter the right key under “API key”.",
    e401none: "This service needs an API key (401). Enter it under “API key”.",
    e413: "Too much input for the service (413). Send fewer or shorter passages.",
    e422: "The service could not accept this input (422).",
    e429: "The service is busy (429). Try again in a moment.", retryAfter: "Try again in {s} s.",
    e503: "The model is not ready yet (503). Try again in a moment.",
    e400: "The service rejected the request (400).", e5xx: "The service failed ({status}).",
    eOther: "Unexpected answer from the service ({status}).",
    eNetwork: "Cannot reach the service. Is `crossrank serve` still running?",
    eShape: "The service answered in an unexpected format.", detail: "Details: {d}",
    eKeyChars: "The API key may only contain visible ASCII characters (no spaces or accents)."
  };

  var zh = {
    title: "crossrank — 重排序试验台",
    skip: "跳到结果", subtitle: "重排序试验台", model: "模型", device: "设备", dtype: "精度",
    input: "输入", query: "查询", queryPlaceholder: "问题、指令，怎么写都可以",
    candidates: "候选文本", onePerLine: "每行一段", candidatesPlaceholder: "每行一段候选文本",
    lines: "{n} 段", lines1: "1 段", examples: "示例", pickExample: "载入示例…", apiKey: "API 密钥",
    apiKeyPlaceholder: "服务设置了密钥时才需要", apiKeyNote: "只保存在当前标签页（sessionStorage）。",
    rerank: "重排序", results: "结果", threshold: "阈值", thresholdExact: "精确阈值", hideBelow: "隐藏不高于阈值的",
    rawData: "原始数据", exportCsv: "导出 CSV", exportJson: "导出 JSON", colRank: "名次", colId: "编号（行）",
    colText: "文本", colRaw: "原始分数", colScore: "归一化分数", colVerdict: "阈值",
    emptyState: "输入查询和候选文本，然后点击“重排序”。",
    rank: "名次", raw: "原始", line: "第 {n} 行", above: "高于", below: "不高于",
    aboveLong: "高于阈值", belowLong: "不高于阈值",
    divider: "阈值 {t}：高于 ▲，不高于 ▼",
    status: "{n} 条结果，用时 {ms} 毫秒 · {above} 条高于 {t}", status1: "1 条结果，用时 {ms} 毫秒 · {above} 条高于 {t}",
    working: "正在为 {n} 段文本打分…", working1: "正在为 1 段文本打分…",
    stale: "这些结果对应的是之前的输入。点击“重排序”更新。",
    showMore: "再显示 {n} 条（还有 {left} 条未显示）", showMore1: "再显示 1 条",
    expand: "展开", collapse: "收起",
    readHead: "模型读取了第 1–{end} 个字符（共 {total} 个，{tokens} 个词元），其余部分被截断。",
    readTail: "模型读取了第 {start}–{end} 个字符（共 {total} 个，{tokens} 个词元），开头部分被截断。",
    readWindow: "分 {windows} 个窗口读取；得分最高的是第 {window} 个窗口：第 {start}–{end} 个字符（共 {total} 个，" +
      "{tokens} 个词元）。",
    thresholdRange: "阈值应在 0 到 1 之间：当前使用 {t}。",
    thresholdNumber: "请输入 0 到 1 之间的数字：仍使用 {t}。",
    needQuery: "请输入查询。", needDocs: "请至少输入一段候选文本（每行一段）。",
    e401: "服务拒绝了 API 密钥（401）。请在“API 密钥”中填写正确的密钥。",
    e401none: "该服务需要 API 密钥（401）。请在“API 密钥”中填写。",
    e413: "输入超出服务的限制（413）。请减少段数或缩短文本。",
    e422: "服务无法接受这些输入（422）。",
    e429: "服务繁忙（429），请稍后再试。", retryAfter: "请在 {s} 秒后重试。",
    e503: "模型尚未就绪（503），请稍后再试。",
    e400: "服务拒绝了请求（400）。", e5xx: "服务出错（{status}）。",
    eOther: "服务返回了意外的状态（{status}）。",
    eNetwork: "无法连接服务。`crossrank serve` 还在运行吗？",
    eShape: "服务返回的格式无法识别。", detail: "详情：{d}",
    eKeyChars: "API 密钥只能包含可见的 ASCII 字符（不能有空格或中文）。"
  };

  // The examples' names as examples.json spells them (it mirrors the demo cases of `crossrank demo`).
  var exampleNames = {
    zh: {
      "single pair sanity": "单对检验",
      "keyword trap: capital": "关键词陷阱：首都",
      "keyword trap: brand": "关键词陷阱：品牌",
      "keyword trap: vitamin": "关键词陷阱：维生素",
      "topic vs answer": "话题与答案",
      "how-to vs news": "教程与新闻",
      "english relevance": "英文相关性",
      "weather": "天气",
      "HR knowledge base": "人事知识库",
      "mixed language": "中英混合"
    }
  };

  /** The sentence `key` in `lang` (English where it has none), each {name} replaced by vars[name]; numbers are
   *  written the language's way (1,000). */
  function translate(lang, key, vars) {
    var table = { en: en, zh: zh }[lang] || en;
    var s = table[key] || en[key] || key;
    Object.keys(vars || {}).forEach(function (k) {
      var v = vars[k];
      s = s.split("{" + k + "}").join(typeof v === "number" ? v.toLocaleString(lang) : String(v));
    });
    return s;
  }

  root.CrossrankI18n = { en: en, zh: zh, exampleNames: exampleNames, translate: translate };
})(typeof window !== "undefined" ? window : globalThis);
