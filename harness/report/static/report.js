// Sorting and filtering the report's tables, and history points that open their run. Written
// out because it is this small: a table library (DataTables, through itables) would bring
// pandas and IPython into the harness for a click that sorts. Every cell carries its exact value
// as JSON in data-value; null (compare's "-") sorts last either way.
"use strict";

function cellValue(row, index) {
  const cell = row.cells[index];
  return cell === undefined ? null : JSON.parse(cell.dataset.value ?? "null");
}

function compareValues(a, b) {
  if (a === b) return 0;
  if (a === null) return 1;
  if (b === null) return -1;
  if (typeof a === "number" && typeof b === "number") return a - b;
  return String(a).localeCompare(String(b));
}

function sortBy(table, header) {
  const index = Array.from(header.parentNode.children).indexOf(header);
  const ascending = !header.classList.contains("asc");
  table.querySelectorAll("th").forEach((th) => th.classList.remove("asc", "desc"));
  header.classList.add(ascending ? "asc" : "desc");
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  rows.sort((r, s) => {
    const a = cellValue(r, index), b = cellValue(s, index);
    if (a === null || b === null) return compareValues(a, b); // missing last, both ways
    return ascending ? compareValues(a, b) : compareValues(b, a);
  });
  rows.forEach((row) => body.appendChild(row));
}

function applyFilters(form) {
  const chosen = {};
  form.querySelectorAll("select[data-filter]").forEach((s) => { chosen[s.dataset.filter] = s.value; });
  let shown = 0, total = 0;
  document.querySelectorAll("tr[data-backend]").forEach((row) => {
    const keep = Object.entries(chosen).every(([key, value]) => !value || row.dataset[key] === value);
    row.hidden = !keep;
    total += 1;
    shown += keep ? 1 : 0;
  });
  document.querySelectorAll("section.group").forEach((section) => {
    section.hidden = section.querySelector("tr[data-backend]:not([hidden])") === null
      && section.querySelector("tr[data-backend]") !== null;
  });
  form.querySelector(".shown").textContent = `${shown} of ${total} rows shown`;
}

document.querySelectorAll("table.sortable").forEach((table) => {
  table.querySelectorAll("thead th").forEach((th) => {
    th.title = "click to sort";
    th.addEventListener("click", () => sortBy(table, th));
  });
});

document.querySelectorAll("form.filters").forEach((form) => {
  form.addEventListener("change", () => applyFilters(form));
  applyFilters(form);
});

window.addEventListener("load", () => {
  document.querySelectorAll("[data-figure^='history'] .js-plotly-plot").forEach((plot) => {
    plot.on("plotly_click", (event) => {
      const page = event.points[0].customdata[1];
      if (page) window.location.href = page;
    });
  });
});
