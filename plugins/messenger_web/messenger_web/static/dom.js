// Small DOM helpers: elements built from text (never from HTML strings), and local time.

/** ``el("p", {class: "x"}, "text", child)``: attributes set as given, children appended (null skipped). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

export function byId(id) { return document.getElementById(id); }

const sameDay = new Intl.DateTimeFormat(undefined, {hour: "numeric", minute: "2-digit"});
const otherDay = new Intl.DateTimeFormat(undefined, {dateStyle: "medium", timeStyle: "short"});

/** A timestamp of the API (ISO 8601, UTC) in the reader's locale and time zone. */
export function formatTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  const now = new Date();
  const today = date.toDateString() === now.toDateString();
  return (today ? sameDay : otherDay).format(date);
}
