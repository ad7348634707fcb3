/* pbx swap.js: shows this visit's tracking number in place of the business's own numbers.
 *
 * Use on every page of the site:
 *   <script src="https://calls.example.com/swap.js" data-numbers="+14155550100" async></script>
 * data-numbers: the business's own number(s), comma-separated, in any format.
 * The script keeps a first-party cookie (pbx_vid, one year) naming the visitor,
 * posts the visit to POST /v1/visits on the server it was loaded from, replaces
 * the listed numbers in text and tel: links with the number it gets back, and
 * pings while the page is visible so the visit keeps its number.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || !window.fetch) { return; }
  var api = new URL(script.src, location.href).origin + "/v1/visits";
  var originals = (script.getAttribute("data-numbers") || "").split(",")
    .map(function (s) { return s.trim(); }).filter(Boolean).slice(0, 10);
  var COOKIE = "pbx_vid";
  var PHONE = /[+(]?\d[\d\s().\-]{5,22}\d/g;
  var SKIP = { SCRIPT: 1, STYLE: 1, TEXTAREA: 1, NOSCRIPT: 1, INPUT: 1 };
  var timer = null;

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
    while (walker.nextNode()) { nodes.push(walker.currentNode); }
    nodes.forEach(function (node) {
      if (node.parentNode && SKIP[node.parentNode.nodeName]) { return; }
      var text = node.nodeValue;
      var swapped = text.replace(PHONE, function (found) {
        return isOriginal(found) ? formatted : found;
      });
      if (swapped !== text) { node.nodeValue = swapped; }
    });
  }

  function swapLinks(root, isOriginal, number) {
    var links = root.querySelectorAll('a[href^="tel:"]');
    for (var i = 0; i < links.length; i++) {
      if (isOriginal(links[i].getAttribute("href").slice(4))) {
        links[i].setAttribute("href", "tel:" + number);
      }
    }
  }

  function apply(answer) {
    if (!answer || !answer.number || !document.body) { return; }
    var isOriginal = matcher(answer);
    swapText(document.body, isOriginal, answer.formatted || answer.number);
    swapLinks(document.body, isOriginal, answer.number);
    document.documentElement.setAttribute("data-pbx-number", answer.number);
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
    }).then(function (r) { return r.ok ? r.json() : null; }).then(function (answer) {
      if (!answer) { return; }
      writeCookie(COOKIE, answer.visitor_id);
      whenReady(function () { apply(answer); });
      schedule(answer.ping_seconds);
    }).catch(function () { /* the page keeps its own number */ });
  }

  function schedule(seconds) {
    if (timer !== null || !seconds) { return; }
    timer = setInterval(function () {
      if (document.visibilityState === "visible") { post(); }
    }, Math.max(10, seconds) * 1000);
  }

  post();
})();
