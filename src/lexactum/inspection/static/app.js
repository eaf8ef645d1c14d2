/* LEXACTUM candidate report: renders window.LEXACTUM_REPORT (data.js) and keeps the grader's grades.
 *
 * Plain script, no framework and nothing fetched: the page is opened from disk (file://), where fetch() of
 * JSON is refused, which is why the data comes as a script. Grades live in localStorage under a key made of
 * the report's title and creation time, so that two reports opened in the same browser never mix theirs.
 */
(function () {
  "use strict";

  var GRADE_NAMES = { 3: "certain lens", 2: "probable", 1: "possible", 0: "not a lens" };
  var GRADER_KEY = "lexactum:grader"; // one name per browser: asked once, kept for every report
  var CSV_HEADER = "ID,grade,grader,timestamp";
  var CHUNK_ROWS = 8; // rows of cards per chunk of the grid (see rebuild)
  var SOURCES = { run: "test set of a training run", predict: "lexactum predict", evaluate: "lexactum evaluate" };

  var report = null; // window.LEXACTUM_REPORT once checked
  var storeKey = ""; // localStorage key of this report's grades
  var grades = {}; // ID -> [grade, ISO timestamp of that grade]
  var view = { gallery: 0, sort: "gallery", grade: "all", truth: "all" };
  var shown = []; // card indices in the grid, in order
  var elements = []; // the card elements of the grid, parallel to `shown`
  var focusPos = 0; // position in `shown` of the card the keys act on
  var cols = 1; // cards per row of the grid
  var nearScreen = null; // IntersectionObserver of the grid's chunks (see showPictures)
  var salAll = false; // the global saliency toggle
  var salFlipped = new Set(); // cards whose overlay differs from the global toggle
  var cardById = new Map(); // ID -> card index

  function $(id) {
    return document.getElementById(id);
  }

  function fail(message) {
    var box = $("error");
    box.textContent = message;
    box.hidden = false;
    throw new Error(message);
  }

  /* ---- the report data: checked once, here ---- */

  function checkReport(r) {
    if (!r || typeof r !== "object") {
      fail("data.js is missing or did not define window.LEXACTUM_REPORT: keep it beside index.html");
    }
    if (r.version !== 1) fail("data.js: report version " + r.version + " is not supported by this page (expects 1)");
    if (typeof r.title !== "string" || typeof r.created !== "string") {
      fail("data.js: 'title' and 'created' must be strings (they name this report's grades in the browser)");
    }
    if (!Array.isArray(r.cards)) fail("data.js: 'cards' is not a list");
    if (!Array.isArray(r.galleries) || r.galleries.length === 0) fail("data.js: 'galleries' is empty or not a list");
    r.cards.forEach(function (c, k) {
      if (!c || typeof c !== "object" || c.id === undefined || c.id === null || typeof c.thumb !== "string") {
        fail("data.js: card " + k + " has no 'id' or no 'thumb'");
      }
      c.id = String(c.id);
      if (cardById.has(c.id)) fail("data.js: cards " + cardById.get(c.id) + " and " + k + " have the same ID " + c.id);
      cardById.set(c.id, k);
    });
    r.galleries.forEach(function (g) {
      if (!Array.isArray(g.cards)) fail("data.js: gallery '" + g.key + "' has no list of cards");
      g.cards.forEach(function (k) {
        if (!Number.isInteger(k) || k < 0 || k >= r.cards.length) {
          fail("data.js: gallery '" + g.key + "' names card " + k + " but there are " + r.cards.length + " cards");
        }
      });
    });
    return r;
  }

  /* ---- grades: localStorage, CSV ---- */

  function loadGrades() {
    storeKey = "lexactum:grades:" + report.title + "|" + report.created;
    var saved = {};
    try {
      saved = JSON.parse(storageGet(storeKey) || "{}") || {};
    } catch (err) {
      say("the grades kept in this browser could not be read (" + err.name + "): starting with none");
    }
    grades = {};
    Object.keys(saved).forEach(function (id) { // keep only well-formed [0-3, timestamp] entries
      var g = saved[id];
      if (Array.isArray(g) && [0, 1, 2, 3].indexOf(g[0]) >= 0 && typeof g[1] === "string") grades[id] = g;
    });
  }

  function storageGet(key) {
    try {
      return window.localStorage.getItem(key);
    } catch (err) {
      say("this browser keeps nothing for this page (" + err.name + "): export the grades before closing it");
      return null;
    }
  }

  function saveGrades() {
    storageSet(storeKey, JSON.stringify(grades));
  }

  function storageSet(key, value) {
    try {
      window.localStorage.setItem(key, value);
    } catch (err) {
      say("grades cannot be kept in this browser (" + err.name + "): export them before closing the page");
    }
  }

  /* Another tab of the same report graded: take its grades, so that neither tab overwrites the other's. */
  function onStorage(e) {
    if (e.key !== storeKey) return;
    loadGrades();
    elements.forEach(function (el, pos) { paintGrade(el, report.cards[shown[pos]].id); });
    showCounts();
  }

  /* Grades the card at position `pos` of the grid (null clears its grade). */
  function setGrade(pos, grade) {
    var id = report.cards[shown[pos]].id;
    if (grade === null) delete grades[id];
    else grades[id] = [grade, new Date().toISOString()];
    saveGrades();
    paintGrade(elements[pos], id);
    showCounts();
  }

  function gradeOf(id) {
    var g = grades[id];
    return g ? g[0] : null;
  }

  function csvField(text) {
    text = String(text);
    return /[",\r\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
  }

  /* The CSV that `lexactum grades` reads: one row per graded ID (its last grade), in rank order. */
  function exportCSV() {
    var grader = csvField(graderName());
    var rows = [CSV_HEADER];
    report.cards.forEach(function (c) {
      var g = grades[c.id];
      if (g) rows.push([csvField(c.id), g[0], grader, g[1]].join(","));
    });
    Object.keys(grades).forEach(function (id) {
      if (!cardById.has(id)) rows.push([csvField(id), grades[id][0], grader, grades[id][1]].join(","));
    });
    return rows.join("\n") + "\n";
  }

  function graderName() {
    return $("grader").value.trim();
  }

  function download() {
    if (!graderName()) {
      say("enter your name as grader first: it goes into every row of the CSV");
      $("grader").focus();
      return;
    }
    var blob = new Blob([exportCSV()], { type: "text/csv" });
    var a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = "grades_" + slug(report.title) + "_" + slug(graderName()) + ".csv";
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(function () { URL.revokeObjectURL(a.href); }, 10000);
    say("exported " + Object.keys(grades).length + " grades as " + a.download);
  }

  function slug(text) {
    return String(text).replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^-+|-+$/g, "") || "report";
  }

  /* ---- the header ---- */

  function fmt(x, digits) {
    return typeof x === "number" && isFinite(x) ? x.toFixed(digits) : "n/a";
  }

  function addTerm(dl, term, value) {
    var dt = document.createElement("dt");
    var dd = document.createElement("dd");
    dt.textContent = term;
    dd.textContent = value;
    dl.append(dt, dd);
  }

  function renderHeader() {
    document.title = report.title + " - LEXACTUM";
    $("title").textContent = report.title;
    var c = report.counts || {};
    var dl = $("summary");
    addTerm(dl, "scored", (SOURCES[report.source] || report.source || "?") + ", " + (report.survey || "?") + " survey");
    addTerm(dl, (report.models || []).length > 1 ? "models" : "model", (report.models || []).join(", ") || "n/a");
    addTerm(dl, "dataset", report.dataset || "n/a");
    addTerm(dl, "created", report.created || "n/a");
    addTerm(dl, "counts", (c.scored != null ? c.scored : "?") + " scored, " +
      (c.lenses != null ? c.lenses + " lenses" : "truth unknown") + ", " + report.cards.length + " cards");
    addTerm(dl, "saliency", report.saliency_method || "none in this report");
    renderMetrics(report.metrics);
    if (report.roc) {
      $("roc-img").src = report.roc;
      $("roc").hidden = false;
    }
  }

  function renderMetrics(m) {
    if (!m) return;
    var box = $("metrics");
    var iv = m.intervals || {};
    [["AUC", "auc"], ["TPR0", "tpr0"], ["TPR10", "tpr10"]].forEach(function (pair) {
      var span = document.createElement("span");
      var ci = iv[pair[1]];
      span.className = "metric";
      span.textContent = pair[0] + " " + fmt(m[pair[1]], 3) +
        (Array.isArray(ci) ? " [" + fmt(ci[0], 3) + ", " + fmt(ci[1], 3) + "]" : "");
      box.appendChild(span);
    });
    var n = document.createElement("span");
    n.className = "metric-n";
    n.textContent = "95% intervals; n = " + m.n + " (" + m.n_lenses + " lenses)";
    box.appendChild(n);
    box.hidden = false;
  }

  /* ---- tabs, sort, filter ---- */

  function renderTabs() {
    var tabs = $("tabs");
    var all = { key: "all", title: "All cards", cards: report.cards.map(function (_, k) { return k; }) };
    report.galleries.push(all);
    report.galleries.forEach(function (g, i) {
      var b = document.createElement("button");
      b.type = "button";
      b.setAttribute("role", "tab");
      b.dataset.gallery = String(i);
      b.textContent = (g.title || g.key) + " (" + g.cards.length + ")";
      b.addEventListener("click", function () {
        view.gallery = i;
        rebuild({ focus: true });
      });
      tabs.appendChild(b);
    });
  }

  function compareBy(sort) {
    var cards = report.cards;
    var rank = function (a, b) { return (cards[a].rank || 0) - (cards[b].rank || 0); };
    if (sort === "rank") return rank;
    if (sort === "score") return function (a, b) { return cards[b].score - cards[a].score || rank(a, b); };
    if (sort === "score-asc") return function (a, b) { return cards[a].score - cards[b].score || rank(b, a); };
    return function (a, b) { // grade: highest first, ungraded last
      var ga = gradeOf(cards[a].id), gb = gradeOf(cards[b].id);
      return (gb === null ? -1 : gb) - (ga === null ? -1 : ga) || rank(a, b);
    };
  }

  function selected() {
    var cards = report.cards;
    var list = report.galleries[view.gallery].cards.filter(function (k) {
      var g = gradeOf(cards[k].id);
      var label = cards[k].label === undefined ? null : cards[k].label;
      if (view.grade === "none" ? g !== null : view.grade !== "all" && String(g) !== view.grade) return false;
      return view.truth === "all" || String(label) === view.truth;
    });
    if (view.sort !== "gallery") list.sort(compareBy(view.sort));
    return list;
  }

  /* ---- the cards ---- */

  function truthText(label) {
    return label === 1 ? "lens" : label === 0 ? "non-lens" : "truth unknown";
  }

  /* [short text for the card, full text for its tooltip] of the catalog quantities, when known. */
  function catalogText(cat) {
    if (!cat) return ["", ""];
    /* The catalog's Einstein area is in steradians (about 1e-11): shown as the Einstein radius in arcsec. */
    var area = cat.einstein_area;
    var radius = typeof area === "number" && area >= 0 ? fmt(Math.sqrt(area / Math.PI) * 206264.806, 2) : "n/a";
    var pix = fmt(cat.lensed_pixels, 0), flux = fmt(cat.lensed_flux, 1);
    return ["\u03b8E " + radius + "\u2033 \u00b7 pix " + pix + " \u00b7 " + flux + "\u03c3",
      "Einstein radius " + radius + " arcsec (area " + (typeof area === "number" ? area.toExponential(3) : "n/a") +
      " sr), lensed pixels " + pix + ", lensed flux " + flux + " sigma"];
  }

  function fillCard(el, k) {
    var c = report.cards[k];
    var img = el.querySelector(".thumb");
    el.dataset.k = String(k);
    el.querySelector(".id").textContent = c.id;
    el.querySelector(".score").textContent = "score " + fmt(c.score, 4);
    el.querySelector(".rank").textContent = "rank " + c.rank;
    el.querySelector(".score").title = "score " + c.score;
    el.querySelector(".truth").textContent = truthText(c.label);
    var cat = catalogText(c.catalog);
    var catEl = el.querySelector(".catalog");
    catEl.textContent = cat[0];
    if (cat[1]) catEl.title = cat[1];
    if (c.label === 1) el.classList.add("lens");
    var sal = el.querySelector(".sal");
    if (c.saliency) sal.setAttribute("aria-label", "Show the saliency overlay of " + c.id);
    else sal.remove();
    el.setAttribute("aria-label", "Candidate " + c.id + ", rank " + c.rank);
    img.alt = "cutout " + c.id;
    if (salShown(k)) markSaliency(el, true);
    paintGrade(el, c.id);
  }

  /* Points the pictures of a chunk that came near the screen at their files. Until then a card's <img> has no
   * src at all: 10,000 images with a src, even lazy ones, cost the first paint most of a second. */
  function showPictures(entries) {
    entries.forEach(function (entry) {
      if (!entry.isIntersecting) return;
      var chunk = entry.target;
      chunk.live = true;
      nearScreen.unobserve(chunk);
      Array.prototype.forEach.call(chunk.children, function (el) { showPicture(el, Number(el.dataset.k)); });
    });
  }

  function showPicture(el, k) {
    if (!el.parentNode || !el.parentNode.live) return; // its chunk shows it when it comes near the screen
    var c = report.cards[k];
    el.querySelector(".thumb").src = salShown(k) ? c.saliency : c.thumb;
  }

  function paintGrade(el, id) {
    var g = gradeOf(id);
    var badge = el.querySelector(".grade-badge");
    badge.textContent = g === null ? "ungraded" : g + " " + GRADE_NAMES[g];
    el.dataset.grade = g === null ? "none" : String(g);
  }

  /* Cards per row, a card's height and the gap between cards, from the grid's width and style.css's sizes. */
  function gridMetrics() {
    var grid = $("grid");
    var style = getComputedStyle(grid);
    var px = function (name) { return parseFloat(style.getPropertyValue(name)) || 0; };
    var gap = px("--gap");
    var width = grid.clientWidth - px("padding-left") - px("padding-right") - 2 * px("--chunk-pad");
    return { cols: Math.max(1, Math.floor((width + gap) / (px("--card-w") + gap))), cardH: px("--card-h"), gap: gap };
  }

  /* Builds the whole grid in one DocumentFragment: one layout for 10,000 cards, not one per card. The cards
   * go in chunks of CHUNK_ROWS full rows, each its own small grid with `content-visibility: auto`: a card
   * whose picture arrives then lays out its chunk only, not a grid of 10,000 (which made scrolling jerky),
   * and chunks away from the screen are neither styled nor laid out. `how.keep` keeps the current card. */
  function rebuild(how) {
    how = how || {};
    var template = $("card-template").content.firstElementChild;
    var fragment = document.createDocumentFragment();
    var metrics = gridMetrics();
    var keep = how.keep ? shown[focusPos] : undefined;
    var perChunk = metrics.cols * CHUNK_ROWS;
    var chunk = null;
    cols = metrics.cols;
    $("grid").style.setProperty("--cols", String(cols));
    shown = selected();
    elements = shown.map(function (k, pos) {
      if (pos % perChunk === 0) {
        chunk = document.createElement("div");
        chunk.className = "chunk";
        chunk.setAttribute("role", "none");
        var rows = Math.ceil(Math.min(perChunk, shown.length - pos) / cols);
        var height = rows * metrics.cardH + (rows - 1) * metrics.gap; // the content box: padding comes on top
        chunk.style.containIntrinsicSize = "auto " + height + "px";
        fragment.appendChild(chunk);
      }
      var el = template.cloneNode(true);
      el.dataset.pos = String(pos);
      fillCard(el, k);
      chunk.appendChild(el);
      return el;
    });
    $("grid").replaceChildren(fragment);
    if (nearScreen) nearScreen.disconnect();
    nearScreen = new IntersectionObserver(showPictures, { rootMargin: "100% 0px" });
    Array.prototype.forEach.call($("grid").children, function (chunk) { nearScreen.observe(chunk); });
    Array.prototype.forEach.call($("tabs").children, function (b, i) {
      b.setAttribute("aria-selected", String(i === view.gallery));
    });
    showCounts();
    var pos = keep === undefined ? -1 : shown.indexOf(keep);
    focusPos = 0;
    moveTo(Math.max(0, pos), { focus: how.focus === true, scroll: pos > 0 });
  }

  function onResize() { // a window that now fits another number of cards per row: new chunks
    clearTimeout(onResize.timer);
    onResize.timer = setTimeout(function () {
      if (gridMetrics().cols !== cols) rebuild({ keep: true, focus: document.activeElement === elements[focusPos] });
    }, 150);
  }

  function showCounts() {
    var total = report.galleries[view.gallery].cards.length;
    var graded = Object.keys(grades).length;
    $("counts").textContent = "showing " + shown.length + " of " + total + " \u00b7 graded " + graded + " of " +
      report.cards.length;
  }

  /* ---- focus and keys ---- */

  /* Makes the card at `pos` the current one (outlined, the one keys act on); focuses and scrolls to it
   * unless told not to (a filter changed from its menu keeps the menu's focus). */
  function moveTo(pos, how) {
    how = how || {};
    if (elements.length === 0) return;
    pos = Math.max(0, Math.min(elements.length - 1, pos));
    var old = elements[focusPos];
    if (old) {
      old.tabIndex = -1;
      old.classList.remove("current");
    }
    focusPos = pos;
    var el = elements[pos];
    el.tabIndex = 0;
    el.classList.add("current");
    if (how.focus !== false) el.focus({ preventScroll: true });
    if (how.scroll !== false) el.scrollIntoView({ block: "nearest" });
  }

  function isTyping(target) {
    return target && target.closest && target.closest("input, textarea, select, [contenteditable]");
  }

  var MOVES = { ArrowRight: 1, j: 1, ArrowLeft: -1, k: -1 };

  function onKey(e) {
    if (e.ctrlKey || e.metaKey || e.altKey || isTyping(e.target) || elements.length === 0) return;
    if (e.key.length === 1 && e.key >= "0" && e.key <= "3") setGrade(focusPos, Number(e.key));
    else if (e.key === "Backspace" || e.key === "Delete") setGrade(focusPos, null);
    else if (MOVES[e.key]) moveTo(focusPos + MOVES[e.key]);
    else if (e.key === "ArrowDown") moveTo(focusPos + cols);
    else if (e.key === "ArrowUp") moveTo(focusPos - cols);
    else if (e.key === "s") toggleSaliency(focusPos);
    else return;
    e.preventDefault();
  }

  function onGridClick(e) {
    var el = e.target.closest(".card");
    if (!el) return;
    var pos = Number(el.dataset.pos);
    if (e.target.closest(".sal")) toggleSaliency(pos);
    moveTo(pos, { scroll: false });
  }

  function onGridFocus(e) { // a card reached with Tab becomes the current one
    var el = e.target.closest(".card");
    if (el && Number(el.dataset.pos) !== focusPos) moveTo(Number(el.dataset.pos), { focus: false, scroll: false });
  }

  function onPictureError(e) {
    var card = e.target.closest && e.target.closest(".card");
    if (!card) return;
    card.classList.add("missing");
    say("picture missing or unreadable: " + e.target.getAttribute("src") + " (card " + card.dataset.k + ")");
  }

  /* ---- saliency overlays ---- */

  function salShown(k) {
    return Boolean(report.cards[k].saliency) && salAll !== salFlipped.has(k);
  }

  function markSaliency(el, on) {
    el.classList.toggle("sal-on", on);
    var b = el.querySelector(".sal");
    if (b) b.setAttribute("aria-pressed", String(on));
  }

  function toggleSaliency(pos) {
    var k = shown[pos];
    var c = report.cards[k];
    if (!c.saliency) {
      say("no saliency overlay for " + c.id + " in this report");
      return;
    }
    if (salFlipped.has(k)) salFlipped.delete(k);
    else salFlipped.add(k);
    showPicture(elements[pos], k);
    markSaliency(elements[pos], salShown(k));
  }

  function toggleAll() {
    salAll = !salAll;
    salFlipped.clear();
    var b = $("saliency-all");
    b.textContent = "Saliency: " + (salAll ? "on" : "off");
    b.setAttribute("aria-pressed", String(salAll));
    elements.forEach(function (el, pos) {
      var c = report.cards[shown[pos]];
      if (!c.saliency) return;
      showPicture(el, shown[pos]);
      markSaliency(el, salAll);
    });
  }

  function say(message) {
    $("status").textContent = message;
  }

  /* ---- start ---- */

  function wireControls() {
    document.addEventListener("keydown", onKey);
    $("grid").addEventListener("click", onGridClick);
    $("grid").addEventListener("focusin", onGridFocus);
    $("grid").addEventListener("error", onPictureError, true); // load errors do not bubble: capture them
    window.addEventListener("storage", onStorage);
    window.addEventListener("resize", onResize);
    $("export").addEventListener("click", download);
    $("saliency-all").addEventListener("click", toggleAll);
    if (!report.cards.some(function (c) { return c.saliency; })) $("saliency-all").disabled = true;
    $("toolbar").querySelectorAll("[data-grade]").forEach(function (b) {
      b.addEventListener("click", function () {
        if (elements.length) setGrade(focusPos, Number(b.dataset.grade));
        moveTo(focusPos, { scroll: false });
      });
    });
    [["sort", "sort"], ["filter-grade", "grade"], ["filter-truth", "truth"]].forEach(function (pair) {
      $(pair[0]).addEventListener("change", function (e) {
        view[pair[1]] = e.target.value;
        rebuild();
      });
    });
    var name = $("grader");
    name.value = storageGet(GRADER_KEY) || "";
    name.addEventListener("input", function () { storageSet(GRADER_KEY, graderName()); });
  }

  function start() {
    report = checkReport(window.LEXACTUM_REPORT);
    loadGrades();
    renderHeader();
    renderTabs();
    wireControls();
    if (!graderName()) say("enter your name as grader (kept in this browser)");
    rebuild({ focus: true });
    window.lexactum.readyMs = performance.now();
    requestAnimationFrame(function () {
      setTimeout(function () { window.lexactum.paintedMs = performance.now(); }, 0);
    });
  }

  window.lexactum = {
    grades: function () {
      var out = {};
      Object.keys(grades).forEach(function (id) { out[id] = grades[id][0]; });
      return out;
    },
    exportCSV: exportCSV,
    storageKey: function () { return storeKey; },
  };
  start();
})();
