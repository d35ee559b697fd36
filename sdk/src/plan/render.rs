//! Human-readable plans, close to Terraform's conventions: `+` create, `~` update, `-/+` replace
//! (`+/-` with create-before-destroy), `-` delete, `<=` read; nested attribute diffs; a summary line.

use std::fmt::{self, Write};

use super::{Action, AttrDiff, Change, Plan, ProjectPlan, Reason};
use crate::attr::{Attr, Attrs};

/// How to render a plan.
#[derive(Clone, Copy, Debug, Default)]
pub struct RenderOptions {
    /// ANSI colours on the change symbols (only for terminals).
    pub color: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Sym {
    Add,
    Change,
    Remove,
    Same,
}

impl Sym {
    fn text(self) -> &'static str {
        match self {
            Sym::Add => "+",
            Sym::Change => "~",
            Sym::Remove => "-",
            Sym::Same => " ",
        }
    }
}

struct Out<'a> {
    buf: &'a mut String,
    color: bool,
}

impl Out<'_> {
    fn paint(&mut self, symbol: &str) {
        let code = match symbol.trim() {
            "+" => "32",
            "~" => "33",
            "-" => "31",
            "-/+" | "+/-" => "35",
            "<=" => "36",
            _ => "",
        };
        if self.color && !code.is_empty() {
            let _ = write!(self.buf, "\x1b[{code}m{symbol}\x1b[0m");
        } else {
            self.buf.push_str(symbol);
        }
    }

    fn line(&mut self, indent: usize, sym: Sym, text: &str) {
        self.buf.push_str(&" ".repeat(indent));
        self.paint(sym.text());
        self.buf.push(' ');
        self.buf.push_str(text);
        self.buf.push('\n');
    }
}

impl Plan {
    /// Renders the plan as text.
    pub fn render(&self, options: &RenderOptions) -> String {
        let mut buf = String::new();
        render_plan(&mut Out { buf: &mut buf, color: options.color }, self);
        buf
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(&RenderOptions::default()))
    }
}

impl ProjectPlan {
    /// Renders every stack's plan under a header, then the total.
    pub fn render(&self, options: &RenderOptions) -> String {
        let mut buf = String::new();
        for plan in &self.stacks {
            let _ = writeln!(buf, "== stack {} ==\n", plan.stack);
            render_plan(&mut Out { buf: &mut buf, color: options.color }, plan);
            buf.push('\n');
        }
        if self.stacks.len() > 1 {
            let s = self.summary();
            let _ = writeln!(buf, "Total: {} to add, {} to change, {} to destroy.", s.add, s.change, s.destroy);
        }
        buf
    }
}

impl fmt::Display for ProjectPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(&RenderOptions::default()))
    }
}

fn render_plan(out: &mut Out<'_>, plan: &Plan) {
    for note in &plan.notes {
        let _ = writeln!(out.buf, "Note: {note}.\n");
    }
    if !plan.drift.is_empty() {
        out.buf.push_str("Note: objects have changed outside of paranix since the last apply:\n\n");
        for drift in &plan.drift {
            let (kind, name) = (drift.address.kind(), drift.address.name());
            if drift.deleted {
                let _ = writeln!(out.buf, "  # {} has been deleted", drift.address);
                out.line(2, Sym::Remove, &format!("resource \"{kind}\" \"{name}\" {{}}"));
            } else {
                let _ = writeln!(out.buf, "  # {} has changed", drift.address);
                out.line(2, Sym::Change, &format!("resource \"{kind}\" \"{name}\" {{"));
                render_diffs(out, &drift.diffs, 6, false);
                out.buf.push_str("    }\n");
            }
            out.buf.push('\n');
        }
    }

    for warning in &plan.warnings {
        let _ = writeln!(out.buf, "Warning: {warning}\n");
    }
    let visible: Vec<&Change> = plan.changes.iter().filter(|c| c.action != Action::NoOp).collect();
    let outputs: Vec<_> = plan.outputs.iter().filter(|o| o.action != Action::NoOp).collect();
    if visible.is_empty() && outputs.is_empty() {
        out.buf.push_str("No changes. The infrastructure matches the configuration.\n");
        return;
    }
    if !visible.is_empty() {
        out.buf.push_str("paranix will perform the following actions:\n\n");
    }
    for change in visible {
        render_change(out, change);
        out.buf.push('\n');
    }
    let s = plan.summary();
    let _ = writeln!(out.buf, "Plan: {} to add, {} to change, {} to destroy.", s.add, s.change, s.destroy);
    if !outputs.is_empty() {
        out.buf.push_str("\nChanges to Outputs:\n");
        let width = outputs.iter().map(|o| o.name.len()).max().unwrap_or(0);
        for o in outputs {
            let name = format!("{:width$}", o.name);
            let (sym, text) = match o.action {
                Action::Create => (Sym::Add, format!("{name} = {}", scalar(o.after.as_ref().unwrap_or(&Attr::Null)))),
                Action::Delete => {
                    (Sym::Remove, format!("{name} = {} -> null", scalar(o.before.as_ref().unwrap_or(&Attr::Null))))
                }
                _ => (
                    Sym::Change,
                    format!(
                        "{name} = {} -> {}",
                        scalar(o.before.as_ref().unwrap_or(&Attr::Null)),
                        scalar(o.after.as_ref().unwrap_or(&Attr::Null))
                    ),
                ),
            };
            out.line(2, sym, &text);
        }
    }
}

fn header(change: &Change) -> (String, &'static str) {
    let reasons = |prefix: &str| {
        let shown: Vec<String> = change
            .reasons
            .iter()
            .filter(|r| !matches!(r, Reason::NotInState | Reason::FieldsChanged { .. }))
            .map(ToString::to_string)
            .collect();
        if shown.is_empty() { String::new() } else { format!("{prefix}{}", shown.join("; ")) }
    };
    let a = &change.address;
    match change.action {
        Action::Create if change.reasons.contains(&Reason::GoneOutOfBand) => {
            (format!("{a} will be created again: it was deleted outside paranix"), "+")
        }
        Action::Create => (format!("{a} will be created"), "+"),
        Action::Update => (format!("{a} will be updated in-place"), "~"),
        Action::Replace if change.create_before_destroy => {
            (format!("{a} must be replaced, creating the new object first: {}", reasons("")), "+/-")
        }
        Action::Replace => (format!("{a} must be replaced: {}", reasons("")), "-/+"),
        Action::Delete => (format!("{a} will be destroyed: {}", reasons("")), "-"),
        Action::Read => (format!("{a} will be read during apply: {}", reasons("")), "<="),
        Action::NoOp => (format!("{a} is unchanged"), " "),
    }
}

fn render_change(out: &mut Out<'_>, change: &Change) {
    let (title, symbol) = header(change);
    let _ = writeln!(out.buf, "  # {title}");
    let a = &change.address;
    let block = match a.mode() {
        crate::address::Mode::Data => format!("data \"{}\" \"{}\" {{", a.kind(), a.name()),
        crate::address::Mode::Managed => format!("resource \"{}\" \"{}\" {{", a.kind(), a.name()),
    };
    out.buf.push_str(&" ".repeat(3usize.saturating_sub(symbol.len())));
    out.paint(symbol);
    out.buf.push(' ');
    out.buf.push_str(&block);
    out.buf.push('\n');
    let empty = Attrs::new();
    match change.action {
        Action::Create | Action::Read => {
            render_map_entries(out, change.after.as_ref().unwrap_or(&empty), Sym::Add, 6);
        }
        Action::Delete => render_map_entries(out, change.before.as_ref().unwrap_or(&empty), Sym::Remove, 6),
        Action::Update | Action::Replace | Action::NoOp => {
            let before = change.before.as_ref().unwrap_or(&empty);
            let after = change.after.as_ref().unwrap_or(&empty);
            // Outputs that will change (unknown after a replace) are shown alongside the changed inputs.
            let mut diffs = change.diffs.clone();
            let changed: Vec<String> = diffs.iter().map(|d| d.field.clone()).collect();
            for (name, value) in after {
                if changed.contains(name) {
                    continue;
                }
                let old = before.get(name);
                if old != Some(value) && old.is_some() {
                    diffs.push(AttrDiff {
                        field: name.clone(),
                        before: old.cloned(),
                        after: Some(value.clone()),
                        forces_replacement: false,
                        sensitive: matches!(value, Attr::Sensitive),
                    });
                }
            }
            diffs.sort_by(|x, y| x.field.cmp(&y.field));
            let shown: Vec<&str> = diffs.iter().map(|d| d.field.as_str()).collect();
            // The object's id, when unchanged, is shown for context, as Terraform does.
            let id = ["id", "arn"].into_iter().find(|k| before.contains_key(*k) && !shown.contains(k));
            let width = diffs.iter().map(|d| key(&d.field).len()).chain(id.map(|k| k.len())).max().unwrap_or(0);
            if let Some(k) = id {
                let _ = writeln!(out.buf, "{}{:width$} = {}", " ".repeat(8), k, scalar(&before[k]));
            }
            render_diffs_aligned(out, &diffs, 6, change.action == Action::Replace, width);
            let hidden = before.keys().filter(|k| !shown.contains(&k.as_str()) && Some(k.as_str()) != id).count();
            if hidden > 0 {
                let _ = writeln!(
                    out.buf,
                    "{}# ({hidden} unchanged attribute{} hidden)",
                    " ".repeat(8),
                    crate::error::plural(hidden)
                );
            }
        }
    }
    out.buf.push_str("    }\n");
}

fn render_diffs(out: &mut Out<'_>, diffs: &[AttrDiff], indent: usize, replace: bool) {
    let width = diffs.iter().map(|d| key(&d.field).len()).max().unwrap_or(0);
    render_diffs_aligned(out, diffs, indent, replace, width);
}

fn render_diffs_aligned(out: &mut Out<'_>, diffs: &[AttrDiff], indent: usize, replace: bool, width: usize) {
    for d in diffs {
        let note = if replace && d.forces_replacement { " # forces replacement" } else { "" };
        if d.sensitive && d.before.is_some() && d.after.is_some() {
            // Both sides are redacted, so they look equal; say only that the value changes.
            out.line(indent, Sym::Change, &format!("{:width$} = (sensitive value){note}", key(&d.field)));
            continue;
        }
        render_entry(out, indent, &key(&d.field), width, d.before.as_ref(), d.after.as_ref(), note);
    }
}

fn render_map_entries(out: &mut Out<'_>, map: &Attrs, sym: Sym, indent: usize) {
    // Unset attributes are not shown, as Terraform does not show them.
    let map: Attrs = map.iter().filter(|(_, v)| **v != Attr::Null).map(|(k, v)| (k.clone(), v.clone())).collect();
    let width = map.keys().map(|k| key(k).len()).max().unwrap_or(0);
    for (k, v) in &map {
        match sym {
            Sym::Remove => render_entry(out, indent, &key(k), width, Some(v), None, ""),
            _ => render_entry(out, indent, &key(k), width, None, Some(v), ""),
        }
    }
}

/// Renders `name = value` with the symbol derived from before/after, recursing into maps and lists.
fn render_entry(
    out: &mut Out<'_>,
    indent: usize,
    name: &str,
    width: usize,
    before: Option<&Attr>,
    after: Option<&Attr>,
    note: &str,
) {
    let label = format!("{name:width$}");
    match (before, after) {
        (None, Some(v)) => render_value(out, indent, Sym::Add, &label, v, note),
        (Some(v), None) => render_value(out, indent, Sym::Remove, &label, v, note),
        (Some(b), Some(a)) if b == a => render_value(out, indent, Sym::Same, &label, a, note),
        (Some(Attr::Map(b)), Some(Attr::Map(a))) => {
            out.line(indent, Sym::Change, &format!("{label} = {{{note}"));
            let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
            keys.sort();
            keys.dedup();
            let inner = keys.iter().map(|k| key(k).len()).max().unwrap_or(0);
            let mut unchanged = 0;
            for k in keys {
                if b.get(k) == a.get(k) {
                    unchanged += 1;
                    continue;
                }
                render_entry(out, indent + 4, &key(k), inner, b.get(k), a.get(k), "");
            }
            if unchanged > 0 {
                let _ = writeln!(
                    out.buf,
                    "{}# ({unchanged} unchanged element{} hidden)",
                    " ".repeat(indent + 6),
                    crate::error::plural(unchanged)
                );
            }
            let _ = writeln!(out.buf, "{}}}", " ".repeat(indent + 2));
        }
        (Some(Attr::List(b)), Some(Attr::List(a))) => {
            out.line(indent, Sym::Change, &format!("{label} = [{note}"));
            let mut unchanged = 0;
            for item in b {
                if !a.contains(item) {
                    render_value(out, indent + 4, Sym::Remove, "", item, "");
                } else {
                    unchanged += 1;
                }
            }
            for item in a {
                if !b.contains(item) {
                    render_value(out, indent + 4, Sym::Add, "", item, "");
                }
            }
            if unchanged > 0 {
                let _ = writeln!(
                    out.buf,
                    "{}# ({unchanged} unchanged element{} hidden)",
                    " ".repeat(indent + 6),
                    crate::error::plural(unchanged)
                );
            }
            let _ = writeln!(out.buf, "{}]", " ".repeat(indent + 2));
        }
        (Some(b), Some(a)) => out.line(indent, Sym::Change, &format!("{label} = {} -> {}{note}", scalar(b), scalar(a))),
        (None, None) => {}
    }
}

/// Renders one value with one symbol throughout (creates and deletes). `label` empty: a list item.
fn render_value(out: &mut Out<'_>, indent: usize, sym: Sym, label: &str, value: &Attr, note: &str) {
    let prefix = if label.is_empty() { String::new() } else { format!("{label} = ") };
    let comma = if label.is_empty() { "," } else { "" };
    match value {
        Attr::Map(map) if !map.is_empty() => {
            out.line(indent, sym, &format!("{prefix}{{{note}"));
            let width = map.keys().map(|k| key(k).len()).max().unwrap_or(0);
            for (k, v) in map {
                render_value(out, indent + 4, sym, &format!("{:width$}", key(k)), v, "");
            }
            let _ = writeln!(out.buf, "{}}}{comma}", " ".repeat(indent + 2));
        }
        Attr::List(items) if !items.is_empty() => {
            out.line(indent, sym, &format!("{prefix}[{note}"));
            for item in items {
                render_value(out, indent + 4, sym, "", item, "");
            }
            let _ = writeln!(out.buf, "{}]{comma}", " ".repeat(indent + 2));
        }
        other => out.line(indent, sym, &format!("{prefix}{}{comma}{note}", scalar(other))),
    }
}

/// A map key as shown: bare when it is an identifier, quoted otherwise (tag names, condition keys).
fn key(k: &str) -> String {
    let ident = k.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && k.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ident { k.to_owned() } else { format!("{k:?}") }
}

/// A value on one line.
fn scalar(value: &Attr) -> String {
    match value {
        Attr::Null => "null".into(),
        Attr::Bool(b) => b.to_string(),
        Attr::Int(i) => i.to_string(),
        Attr::Str(s) => serde_json::to_string(s).unwrap_or_default(),
        Attr::Ref(_) | Attr::Unknown => "(known after apply)".into(),
        Attr::Sensitive => "(sensitive value)".into(),
        Attr::List(items) if items.is_empty() => "[]".into(),
        Attr::Map(map) if map.is_empty() => "{}".into(),
        Attr::List(items) => format!("[{}]", items.iter().map(scalar).collect::<Vec<_>>().join(", ")),
        Attr::Map(map) => {
            format!(
                "{{ {} }}",
                map.iter().map(|(k, v)| format!("{} = {}", key(k), scalar(v))).collect::<Vec<_>>().join(", ")
            )
        }
    }
}
