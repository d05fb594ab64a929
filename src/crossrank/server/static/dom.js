/* crossrank web page: DOM helpers shared by its scripts. User text only ever becomes text nodes here. */
(function (root) {
  "use strict";

  function node(tag, className, text) {
    var e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function storageGet(store, key) {
    try { return window[store].getItem(key); } catch (e) { return null; }
  }
  function storageSet(store, key, value) {
    try {
      if (value) window[store].setItem(key, value); else window[store].removeItem(key);
    } catch (e) { /* private mode: the page still works, it just forgets */ }
  }

  /** Fills `target` with text nodes and <mark> elements; never parses `text` as HTML. */
  function appendHighlighted(target, text, pattern) {
    if (!pattern) { target.appendChild(document.createTextNode(text)); return; }
    var last = 0, m;
    pattern.lastIndex = 0;
    while ((m = pattern.exec(text)) !== null) {
      if (m.index > last) target.appendChild(document.createTextNode(text.slice(last, m.index)));
      target.appendChild(node("mark", null, m[0]));
      last = m.index + m[0].length;
    }
    if (last < text.length) target.appendChild(document.createTextNode(text.slice(last)));
  }

  /** Scrolls `anchor` to the top when `target` is not wholly on screen (on a phone the results sit below the form). */
  function reveal(target, anchor) {
    var box = target.getBoundingClientRect();
    if (box.top >= 0 && box.bottom <= window.innerHeight) return;
    var smooth = !window.matchMedia("(prefers-reduced-motion: reduce)").matches;
    anchor.scrollIntoView({ block: "start", behavior: smooth ? "smooth" : "auto" });
  }

  root.CrossrankDom = { node: node, appendHighlighted: appendHighlighted, reveal: reveal, storageGet: storageGet,
    storageSet: storageSet };
})(window);
