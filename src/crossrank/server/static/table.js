/* crossrank web page: the raw-data table (sortable, with rank and above/below) and the CSV/JSON exports. */
(function (root) {
  "use strict";

  var L = root.CrossrankLogic, node = root.CrossrankDom.node;

  /** `tableEl`: the <table>; `run()`: the last results or null; `threshold()`: the one in force; `t`: translator. */
  function create(tableEl, run, threshold, t) {
    var sort = { key: "score", dir: "descending" };

    function sortedRows() {
      var key = sort.key, sign = sort.dir === "ascending" ? 1 : -1;
      return run().rows.slice().sort(function (a, b) {
        var x = a[key], y = b[key];
        var c = typeof x === "string" ? x.localeCompare(y) : x - y;
        return c !== 0 ? sign * c : a.rank - b.rank;
      });
    }

    function renderTable() {
      var tbody = tableEl.tBodies[0];
      tableEl.querySelectorAll("th[data-key]").forEach(function (th) {
        th.setAttribute("aria-sort", th.dataset.key === sort.key ? sort.dir : "none");
      });
      if (!run()) { tbody.replaceChildren(); return; }
      var frag = document.createDocumentFragment();
      sortedRows().forEach(function (row) {
        var tr = node("tr");
        tr.dataset.index = String(row.index);
        var text = node("td", "text", row.text);
        text.dir = "auto";
        tr.append(node("td", "num", row.rank), node("td", "num", row.line), text, node("td", "num", L.fmt(row.raw, 4)),
          node("td", "num", L.fmt(row.score, 4)), node("td", "verdict-cell"));
        frag.appendChild(tr);
      });
      tbody.replaceChildren(frag);
      updateTableVerdicts(threshold());
    }

    function updateTableVerdicts(th) {
      var byIndex = new Map((run() ? run().rows : []).map(function (r) { return [String(r.index), r]; }));
      Array.from(tableEl.tBodies[0].rows).forEach(function (tr) {
        var row = byIndex.get(tr.dataset.index);
        var isAbove = L.isAbove(row.score, th);
        tr.className = isAbove ? "above" : "below";
        tr.cells[5].textContent = (isAbove ? "▲ " : "▼ ") + (isAbove ? t("above") : t("below"));
      });
    }

    function exportRows() {
      return run() ? run().rows.map(function (r) {
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
      if (!run()) return;
      var cols = ["rank", "id", "index", "text", "raw_score", "relevance_score"];
      var lines = [cols.join(",")].concat(exportRows().map(function (r) {
        return cols.map(function (c) { return csvCell(r[c]); }).join(",");
      }));
      // The BOM makes spreadsheet programs read Chinese text as UTF-8.
      download("crossrank-results.csv", "text/csv;charset=utf-8", "\ufeff" + lines.join("\r\n") + "\r\n");
    }

    function exportJson() {
      if (!run()) return;
      var doc = { query: run().query, model: run().model, threshold: threshold(), results: exportRows() };
      download("crossrank-results.json", "application/json", JSON.stringify(doc, null, 2) + "\n");
    }

    /** Sort by a column: again on the same column flips the direction; scores start best first. */
    function sortBy(key) {
      if (sort.key === key) {
        sort.dir = sort.dir === "ascending" ? "descending" : "ascending";
      } else {
        sort = { key: key, dir: key === "score" || key === "raw" ? "descending" : "ascending" };
      }
      renderTable();
    }

    return { render: renderTable, updateVerdicts: updateTableVerdicts, sortBy: sortBy, exportCsv: exportCsv,
      exportJson: exportJson };
  }

  root.CrossrankTable = { create: create };
})(window);
