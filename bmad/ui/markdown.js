// Markdown -> DOM for artifacts, safely: the text a model wrote is only ever
// put in text nodes and in the href of http(s)/mailto links, never parsed as
// HTML, so markup in it (<script>, <img onerror>) shows as the text it is.
// It covers what BMAD artifacts use: headings, paragraphs, emphasis, code,
// lists (nested by indentation), quotes, tables, rules and links.

import {h} from "./dom.js";

const SAFE_URL = /^(https?:\/\/|mailto:)/i;
const MAX_DEPTH = 8;  // nesting of lists and quotes; deeper text is shown flat

// [pattern, make(match, depth) -> Node], tried in order at each position. No pattern looks past
// the next delimiter of its kind (nor far), so a long text full of unmatched markers ("_x _x _x")
// renders in linear time, not quadratic.
const INLINE = [
  [/^`([^`\n]{1,1000})`/, (m) => h("code", null, m[1])],
  [/^!?\[([^\]\n]{0,500})\]\(([^()\s]{1,1000})(?:\s+"[^"\n]{0,300}")?\)/, (m, d) => link(m[1], m[2], d, m[0].startsWith("!"))],
  [/^<((?:https?:\/\/|mailto:)[^<>\s]{1,1000})>/, (m) => link(m[1], m[1], MAX_DEPTH)],
  [/^\*\*(?=\S)((?:[^*]|\*(?!\*)){0,1000}?\S)\*\*/, (m, d) => h("strong", null, inline(m[1], d + 1))],
  [/^__(?=\S)((?:[^_]|_(?!_)){0,1000}?\S)__/, (m, d) => h("strong", null, inline(m[1], d + 1))],
  [/^\*(?=[^*\s])([^*]{0,1000}?[^*\s])\*(?!\*)/, (m, d) => h("em", null, inline(m[1], d + 1))],
  [/^_(?=[^_\s])([^_]{0,1000}?[^_\s])_(?![A-Za-z0-9_])/, (m, d) => h("em", null, inline(m[1], d + 1))],
  [/^~~(?=\S)((?:[^~]|~(?!~)){0,1000}?\S)~~/, (m, d) => h("del", null, inline(m[1], d + 1))],
];

function link(text, url, depth, image) {
  const label = image ? `[image: ${text || url}]` : inline(text || url, depth + 1);
  if (!SAFE_URL.test(url)) return h("span", {class: "md-link-text"}, label);
  return h("a", {href: url, rel: "noopener noreferrer nofollow", target: "_blank"}, label);
}

// Inline text -> nodes. Plain runs stop at the next character that can start markup.
export function inline(text, depth = 0) {
  if (depth >= MAX_DEPTH) return [text];
  const out = [];
  let plain = "";
  let last = "";  // the last plain character (reading it from `plain` would flatten the string each time)
  let rest = text;
  while (rest) {
    let matched = null;
    // An underscore inside a word (snake_case) is not emphasis.
    const inWord = rest[0] === "_" && /[A-Za-z0-9]/.test(last);
    if ("`![<*_~".includes(rest[0]) && !inWord) {
      for (const [pattern, make] of INLINE) {
        const m = pattern.exec(rest);
        if (m) { matched = [m[0].length, make(m, depth)]; break; }
      }
    }
    if (matched) {
      if (plain) { out.push(plain); plain = ""; }
      last = "";
      out.push(matched[1]);
      rest = rest.slice(matched[0]);
    } else {
      const next = rest.slice(1).search(/[`![<*_~]/);
      const take = next < 0 ? rest.length : next + 1;
      plain += rest.slice(0, take);
      last = rest[take - 1];
      rest = rest.slice(take);
    }
  }
  if (plain) out.push(plain);
  return out;
}

const FENCE = /^\s{0,3}(`{3,}|~{3,})\s*([\w+-]*)/;
const HEADING = /^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const RULE = /^\s{0,3}([-*_])(\s*\1){2,}\s*$/;
const ITEM = /^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/;
const QUOTE = /^\s{0,3}>\s?(.*)$/;
const TABLE_RULE = /^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$/;

function cells(line) {
  return line.trim().replace(/^\|/, "").replace(/\|$/, "").split("|").map((c) => c.trim());
}

function blank(line) { return !line.trim(); }

// Block structure of `lines` -> nodes.
function blocks(lines, depth) {
  const out = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (blank(line)) { i += 1; continue; }
    let m;
    if ((m = FENCE.exec(line))) {
      const body = [];
      i += 1;
      while (i < lines.length && !lines[i].trim().startsWith(m[1])) body.push(lines[i++]);
      i += 1;
      out.push(h("pre", {class: "md-code", "data-lang": m[2] || null}, h("code", null, body.join("\n"))));
    } else if ((m = HEADING.exec(line))) {
      out.push(h(`h${m[1].length}`, {class: "md-heading"}, inline(m[2], depth)));
      i += 1;
    } else if (RULE.test(line)) {
      out.push(h("hr"));
      i += 1;
    } else if (QUOTE.test(line)) {
      const body = [];
      while (i < lines.length && (m = QUOTE.exec(lines[i]))) { body.push(m[1]); i += 1; }
      out.push(h("blockquote", null, depth < MAX_DEPTH ? blocks(body, depth + 1) : body.join("\n")));
    } else if (line.includes("|") && i + 1 < lines.length && TABLE_RULE.test(lines[i + 1])) {
      const head = cells(line);
      i += 2;
      const rows = [];
      while (i < lines.length && lines[i].includes("|") && !blank(lines[i])) rows.push(cells(lines[i++]));
      out.push(h("div", {class: "table-wrap"}, h("table", {class: "md-table"},
        h("thead", null, h("tr", null, head.map((c) => h("th", {scope: "col"}, inline(c, depth))))),
        h("tbody", null, rows.map((r) => h("tr", null, head.map((_, k) => h("td", null, inline(r[k] || "", depth)))))))));
    } else if ((m = ITEM.exec(line))) {
      const ordered = /\d/.test(m[2]);
      const indent = m[1].length;
      const items = [];
      while (i < lines.length) {
        const it = ITEM.exec(lines[i]);
        if (!it || it[1].length !== indent || /\d/.test(it[2]) !== ordered) break;
        const body = [it[3]];
        i += 1;
        // The item's own lines: indented deeper than its marker (a nested list among them), or
        // a lazy continuation; a blank line ends it unless indented text follows.
        while (i < lines.length) {
          const next = lines[i];
          const nextItem = ITEM.exec(next);
          if (nextItem && nextItem[1].length <= indent) break;
          if (blank(next)) {
            if (i + 1 < lines.length && /^\s+/.test(lines[i + 1]) && !blank(lines[i + 1])
                && (lines[i + 1].match(/^\s*/)[0].length > indent)) { body.push(""); i += 1; continue; }
            break;
          }
          if (!nextItem && !/^\s/.test(next) && (HEADING.test(next) || FENCE.test(next) || QUOTE.test(next))) break;
          body.push(next.slice(Math.min(next.match(/^\s*/)[0].length, indent + 2)));
          i += 1;
        }
        items.push(body);
      }
      const start = ordered ? parseInt(m[2], 10) : null;
      out.push(h(ordered ? "ol" : "ul", {start: ordered && start !== 1 ? String(start) : null},
        items.map((body) => h("li", null, depth < MAX_DEPTH && body.length > 1 ? blocks(body, depth + 1)
          : inline(body.join("\n"), depth)))));
    } else {
      const body = [];
      while (i < lines.length && !blank(lines[i]) && !FENCE.test(lines[i]) && !HEADING.test(lines[i])
             && !QUOTE.test(lines[i]) && !(body.length && ITEM.test(lines[i]) && !/^\s/.test(lines[i]))) {
        body.push(lines[i].trim());
        i += 1;
      }
      out.push(h("p", null, inline(body.join("\n"), depth)));
    }
  }
  return out;
}

// The whole document: a <div class="markdown"> to put where the artifact goes.
export function renderMarkdown(text) {
  return h("div", {class: "markdown"}, blocks(String(text ?? "").replace(/\r\n?/g, "\n").split("\n"), 0));
}
