// neighcheck report: inlined into report.html. Progressive: every link works without it.
"use strict";
(function () {
  // Following a link to a case (matrix cell, clause list, hash in the URL) opens its details.
  function openTarget() {
    var id = decodeURIComponent(window.location.hash.slice(1));
    if (!id) return;
    var target = document.getElementById(id);
    if (target && target.tagName === "DETAILS") target.open = true;
  }
  window.addEventListener("hashchange", openTarget);
  openTarget();

  // A matrix cell is clickable as a whole, not only its text.
  document.querySelectorAll("td.cell").forEach(function (cell) {
    cell.addEventListener("click", function (event) {
      var link = cell.querySelector("a");
      if (link && event.target !== link) link.click();
    });
  });

  var search = document.getElementById("case-filter");
  var boxes = Array.prototype.slice.call(document.querySelectorAll("input.verdict-filter"));
  var rows = Array.prototype.slice.call(document.querySelectorAll("#cases-table tbody tr"));
  var counter = document.getElementById("case-count");

  function applyFilter() {
    var words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
    var verdicts = {};
    boxes.forEach(function (box) { verdicts[box.value] = box.checked; });
    var shown = 0;
    rows.forEach(function (row) {
      var text = row.textContent.toLowerCase();
      var visible = verdicts[row.dataset.verdict] !== false &&
        words.every(function (word) { return text.indexOf(word) !== -1; });
      row.hidden = !visible;
      if (visible) shown += 1;
    });
    counter.textContent = shown + " of " + rows.length + " cases";
  }
  if (search) {
    search.addEventListener("input", applyFilter);
    boxes.forEach(function (box) { box.addEventListener("change", applyFilter); });
    applyFilter();
  }

  // A clause-table cell lists that clause's cases on that device.
  document.querySelectorAll("td.clause-cell").forEach(function (cell) {
    cell.addEventListener("click", function () {
      if (!search) return;
      search.value = cell.dataset.filter;
      boxes.forEach(function (box) { box.checked = true; });
      applyFilter();
      document.getElementById("cases").scrollIntoView();
    });
  });
})();
