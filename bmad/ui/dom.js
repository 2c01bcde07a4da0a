// DOM helpers. Every string goes in as a text node or an attribute value,
// never as markup: nothing in this UI assigns HTML source to an element.

const SVG_NS = "http://www.w3.org/2000/svg";
const BOOLEAN_PROPS = new Set(["disabled", "hidden", "required", "checked", "selected", "open"]);

function append(node, child) {
  if (child === null || child === undefined || child === false || child === "") return;
  if (Array.isArray(child)) {
    for (const c of child) append(node, c);
  } else if (child instanceof Node) {
    node.appendChild(child);
  } else {
    node.appendChild(document.createTextNode(String(child)));
  }
}

function setAttrs(node, attrs) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else if (BOOLEAN_PROPS.has(name)) {
      node[name] = Boolean(value);
    } else if (name === "value") {
      node.value = String(value);
    } else {
      node.setAttribute(name === "className" ? "class" : name, value === true ? "" : String(value));
    }
  }
}

export function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  append(node, children);
  return node;
}

export function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined) node.setAttribute(name, String(value));
  }
  append(node, children);
  return node;
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

export function fill(node, ...children) {
  clear(node);
  append(node, children);
  return node;
}

// An explained state: kind is "info", "empty", "error" or "warn".
export function notice(kind, title, detail) {
  return h("div", {class: `notice notice-${kind}`, role: kind === "error" ? "alert" : "status"},
    h("strong", null, title), detail ? h("p", null, detail) : null);
}

// A value tile; data-value keeps the raw number the API gave.
export function tile(metric, label, text, raw, hint) {
  return h("div", {class: "tile", "data-metric": metric},
    h("span", {class: "tile-label"}, label),
    h("span", {class: "tile-value", "data-value": raw === undefined || raw === null ? "" : String(raw)}, text),
    hint ? h("span", {class: "tile-hint"}, hint) : null);
}

const STATE_LABELS = {half_open: "half-open", waiting_approval: "waiting for approval"};

export function badge(state, extraClass) {
  const s = String(state ?? "unknown");
  const safe = s.replace(/[^a-z_]/gi, "");
  return h("span", {class: `badge state-${safe}${extraClass ? " " + extraClass : ""}`, "data-state": s},
    STATE_LABELS[s] || s.replace(/_/g, " "));
}

// columns: [{label, cell(row) -> Node|string, num?: bool}]; rows: array.
export function table(columns, rows, {caption, empty, rowAttrs} = {}) {
  if (!rows || rows.length === 0) return notice("empty", empty || "Nothing to show yet.", null);
  const head = h("tr", null, columns.map((c) => h("th", {scope: "col", class: c.num ? "num" : null}, c.label)));
  const body = rows.map((row) => h("tr", rowAttrs ? rowAttrs(row) : null,
    columns.map((c) => h("td", {class: c.num ? "num" : null, "data-label": c.label}, c.cell(row)))));
  return h("div", {class: "table-wrap"},
    h("table", null, caption ? h("caption", null, caption) : null, h("thead", null, head), h("tbody", null, body)));
}

export function section(title, ...children) {
  return h("section", {class: "card"}, h("h2", null, title), children);
}
