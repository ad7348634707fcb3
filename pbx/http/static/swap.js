/* pbx swap.js: shows this visit's tracking number in place of the business's own numbers.
 *
 * Use on every page of the site:
 *   <script src="https://calls.example.com/swap.js" data-numbers="+14155550100" async></script>
 * data-numbers: the business's own number(s), comma-separated, in any format.
 * data-api (optional): the visitor API's origin when it is not the one the script
 * was loaded from (the script self-hosted or on a CDN).
 * The script keeps a first-party cookie (pbx_vid, one year) naming the visitor,
 * posts the visit to POST /v1/visits on that origin, replaces the listed numbers
 * in text and tel: links with the number it gets back, and pings while the page
 * is visible so the visit keeps its number.
 * When it does not swap it says why in the browser console, once per reason, as a
 * warning starting "pbx swap:" (API unreachable, this page's origin refused by
 * CORS, an error answer, no pool number, none of data-numbers on the page).
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || !window.fetch) { return; }
  var base = new URL(script.getAttribute("data-api") || script.src, location.href).origin;
  var api = base + "/v1/visits";
  var originals = (script.getAttribute("data-numbers") || "").split(",")
    .map(function (s) { return s.trim(); }).filter(Boolean).slice(0, 10);
  var COOKIE = "pbx_vid";
  var PHONE = /[+(]?\d[\d\s().\-]{5,22}\d/g;
  var SKIP = { SCRIPT: 1, STYLE: 1, TEXTAREA: 1, NOSCRIPT: 1, INPUT: 1 };
  var timer = null;
  var warned = {};
  var shown = false;

  function warn(text) {
    if (warned[text] || !window.console) { return; }
    warned[text] = true;
    console.warn("pbx swap: " + text);
  }

  function readCookie(name) {
    var parts = document.cookie ? document.cookie.split("; ") : [];
    for (var i = 0; i < parts.length; i++) {
      var eq = parts[i].indexOf("=");
      if (parts[i].slice(0, eq) === name) { return decodeURIComponent(parts[i].slice(eq + 1)); }
    }
    return null;
  }

  function writeCookie(name, value) {
    var secure = location.protocol === "https:" ? "; Secure" : "";
    document.cookie = name + "=" + encodeURIComponent(value) +
      "; Max-Age=31536000; Path=/; SameSite=Lax" + secure;
  }

  function gaClientId() {
    var m = /^GA\d\.\d+\.(\d+\.\d+)$/.exec(readCookie("_ga") || "");
    return m ? m[1] : null;
  }

  function digitsOf(text) { return text.replace(/\D/g, ""); }

  function matcher(answer) {
    var wanted = {};
    (answer.replace || []).forEach(function (r) {
      wanted[r.digits] = true;
      wanted[digitsOf(r.e164)] = true;
    });
    return function (text) { return wanted[digitsOf(text)] === true; };
  }

  function swapText(root, isOriginal, formatted) {
    var walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT, null);
    var nodes = [];
    var count = 0;
    while (walker.nextNode()) { nodes.push(walker.currentNode); }
    nodes.forEach(function (node) {
      if (node.parentNode && SKIP[node.parentNode.nodeName]) { return; }
      var text = node.nodeValue;
      var swapped = text.replace(PHONE, function (found) {
        if (!isOriginal(found)) { return found; }
        count++;
        return formatted;
      });
      if (swapped !== text) { node.nodeValue = swapped; }
    });
    return count;
  }

  function swapLinks(root, isOriginal, number) {
    var links = root.querySelectorAll('a[href^="tel:"]');
    var count = 0;
    for (var i = 0; i < links.length; i++) {
      if (isOriginal(links[i].getAttribute("href").slice(4))) {
        links[i].setAttribute("href", "tel:" + number);
        count++;
      }
    }
    return count;
  }

  function explain(answer) {
    var source = answer.source ? "source \"" + answer.source + "\"" : "";
    if (answer.fallback && answer.number) {
      warn("no free number in the pool of " + source + ": showing its fallback number " +
        answer.number + " (calls to it are not tied to this visit)");
    } else if (answer.fallback) {
      warn("not swapped: no free number in the pool of " + source +
        " and no fallback number: the page keeps its own number");
    } else if (!answer.number && answer.source) {
      warn("not swapped: " + source + " has no number to show: the page keeps its own number");
    } else if (!answer.number) {
      warn("not swapped: no source matched this visit and there is no default source");
    }
  }

  function apply(answer) {
    explain(answer);
    if (!answer.number || !document.body) { return; }
    if (!originals.length) {
      warn("not swapped: the script tag has no data-numbers (the page's own numbers)");
      return;
    }
    var isOriginal = matcher(answer);
    var count = swapText(document.body, isOriginal, answer.formatted || answer.number) +
      swapLinks(document.body, isOriginal, answer.number);
    document.documentElement.setAttribute("data-pbx-number", answer.number);
    shown = shown || count > 0;
    if (!shown) {
      warn("not swapped: none of data-numbers (" + originals.join(", ") +
        ") appears on this page");
    }
  }

  function refused(response) {
    return response.json().catch(function () { return {}; }).then(function (body) {
      warn("not swapped: the visitor API at " + base + " answered " + response.status +
        (body && body.error ? " (" + body.error + ")" : ""));
      return null;
    });
  }

  function unreached() {
    // The POST failed before any answer: either nothing listens at the API, or the
    // browser refused the answer (CORS). A no-cors request tells the two apart: it
    // succeeds, opaquely, whenever the server answers at all.
    return fetch(base + "/swap.js", { mode: "no-cors", cache: "no-store", credentials: "omit" })
      .then(function () {
        warn("not swapped: the visitor API at " + base + " refused this page's origin " +
          location.origin + " (CORS): add it to cors_origins in the daemon's [http] config");
      }, function () {
        warn("not swapped: the visitor API at " + base + " is unreachable");
      }).then(function () { return null; });
  }

  function whenReady(fn) {
    if (document.readyState === "loading") {
      document.addEventListener("DOMContentLoaded", fn);
    } else {
      fn();
    }
  }

  function post() {
    var body = {
      visitor_id: readCookie(COOKIE),
      landing_url: location.href,
      referrer: document.referrer || null,
      ga_client_id: gaClientId(),
      numbers: originals
    };
    return fetch(api, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      credentials: "omit",
      keepalive: true
    }).then(function (r) { return r.ok ? r.json() : refused(r); }, unreached)
      .then(function (answer) {
        if (!answer) { return; }
        writeCookie(COOKIE, answer.visitor_id);
        whenReady(function () { apply(answer); });
        schedule(answer.ping_seconds);
      }).catch(function (err) {  /* the page keeps its own number */
        warn("not swapped: " + (err && err.message ? err.message : err));
      });
  }

  function schedule(seconds) {
    if (timer !== null || !seconds) { return; }
    timer = setInterval(function () {
      if (document.visibilityState === "visible") { post(); }
    }, Math.max(10, seconds) * 1000);
  }

  post();
})();
