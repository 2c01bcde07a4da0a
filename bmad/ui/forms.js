// Forms built from a catalog entry's declared inputs, and the catalog picker.

import {h} from "./dom.js";

let uid = 0;

// inputs: [{name, required, description}] -> {fields: Node[], values(): {name: text}}
export function inputFields(prefix, inputs) {
  const controls = [];
  const fields = inputs.map((input) => {
    const id = `${prefix}-in-${++uid}`;
    const help = `${id}-help`;
    const control = h("textarea", {id, name: input.name, rows: input.required ? 3 : 2, required: input.required,
      "aria-describedby": help, "data-input": input.name});
    controls.push(control);
    return h("div", {class: "field"},
      h("label", {for: id}, input.name, input.required ? h("span", {class: "req"}, " (required)") : h("span", {class: "muted"}, " (optional)")),
      h("p", {id: help, class: "help"}, input.description || ""),
      control);
  });
  return {
    fields,
    values() {
      const out = {};
      for (const c of controls) if (c.value.trim()) out[c.name] = c.value;
      return out;
    },
  };
}

export function textField(prefix, label, help, attrs) {
  const id = `${prefix}-${++uid}`;
  const control = h("input", Object.assign({id, type: "text", "aria-describedby": help ? `${id}-help` : null}, attrs || {}));
  return {
    node: h("div", {class: "field"}, h("label", {for: id}, label), help ? h("p", {id: `${id}-help`, class: "help"}, help) : null, control),
    control,
  };
}

// A list of catalog entries as buttons; onSelect(entry) when one is chosen.
export function catalogList(label, entries, onSelect) {
  const buttons = [];
  const list = h("ul", {class: "catalog", "aria-label": label}, entries.map((entry) => {
    const button = h("button", {type: "button", class: "catalog-item", "aria-pressed": "false", "data-id": entry.id},
      h("span", {class: "catalog-name"}, entry.name || entry.id),
      h("span", {class: "catalog-id"}, entry.id),
      h("span", {class: "catalog-desc"}, entry.description || ""));
    button.addEventListener("click", () => {
      for (const b of buttons) b.setAttribute("aria-pressed", String(b === button));
      onSelect(entry);
    });
    buttons.push(button);
    return h("li", null, button);
  }));
  return list;
}
