/* crossrank web page: the calls to the service and the sentences its failures become. */
(function (root) {
  "use strict";

  /** `t`: the page's translator; `apiKey`: a function giving the key typed in (or ""). */
  function create(t, apiKey) {
    function authHeaders() {
      var headers = { "Content-Type": "application/json", "Accept": "application/json" };
      var key = apiKey();
      // HTTP headers carry only visible ASCII; fetch would throw a bare TypeError for anything else.
      if (/[^\x21-\x7e]/.test(key)) throw new ServiceError(t("eKeyChars"), 0, "key");
      if (key) headers.Authorization = "Bearer " + key;
      return headers;
    }

    /** `fixedBy`: the input whose edit makes the message obsolete ("key", "input"), if any. */
    function ServiceError(message, status, fixedBy) {
      this.message = message; this.status = status; this.fixedBy = fixedBy || null;
    }

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

    function describeFailure(status, body, headers, sentKey) {
      var key = { 400: "e400", 401: "e401", 403: "e401", 413: "e413", 422: "e422", 429: "e429", 503: "e503" }[status];
      if (key === "e401" && !sentKey) key = "e401none";
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
            if (!resp.ok) {
              var fixedBy = { 400: "input", 401: "key", 403: "key", 413: "input", 422: "input" }[resp.status];
              var message = describeFailure(resp.status, body, resp.headers, Boolean(headers.Authorization));
              throw new ServiceError(message, resp.status, fixedBy);
            }
            return body;
          });
        });
    }

    /** Normalised scores, raw logits and what the model read of each passage in one /v1/rerank answer (crossrank's
     *  raw_scores and return_read_span extensions). */
    function score(query, docs) {
      var body = { query: query, documents: docs, return_documents: false, raw_scores: true, return_read_span: true };
      return postJson("v1/rerank", body).then(function (v1) {
        var ok = v1 && Array.isArray(v1.results) &&
          v1.results.every(function (r) { return typeof r.raw_score === "number"; });
        if (!ok) throw new ServiceError(t("eShape"), 200);
        return v1;
      });
    }

    /** Model, device and dtype from /info ({model, device, dtype}, each a string or undefined), or null. */
    function info() {
      var headers;
      try { headers = authHeaders(); } catch (err) { return Promise.resolve(null); }
      return fetch("info", { headers: headers }).then(function (resp) {
        return resp.ok ? resp.json() : null;
      }).then(function (found) {
        if (!found) return null;
        var model = found.model_id || found.model || found.id;
        if (model && typeof model === "object") model = model.id || model.name;
        // crossrank's /info says model_device / model_dtype (TEI's names); plain device / dtype are accepted too.
        var pick = function (v) { return typeof v === "string" ? v : undefined; };
        return { model: pick(model), device: pick(found.model_device || found.device),
          dtype: pick(found.model_dtype || found.dtype) };
      }).catch(function () { return null; });
    }

    return { score: score, info: info, ServiceError: ServiceError };
  }

  root.CrossrankService = { create: create };
})(window);
