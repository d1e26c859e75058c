//! Writing a [`Report`] as one HTML document.

use std::fmt::Write;

use base64::Engine;

use super::{ImageSource, Item, Report};
use crate::viz_error::VizResult;

const STYLE: &str = include_str!("style.css");
const SCRIPT: &str = include_str!("scatter.js");

/// Escape text for HTML content and attribute values.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// MIME type of a picture file from its extension (PNG when unknown).
fn mime(path: &std::path::Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("svg") => "image/svg+xml",
        _ => "image/png",
    }
}

/// The complete page.
pub(crate) fn document(report: &Report) -> VizResult<String> {
    let mut body = String::new();
    let mut scripts = 0usize;
    for (s, section) in report.sections.iter().enumerate() {
        let _ = writeln!(body, "<section id=\"s{s}\"><h2>{}</h2>", escape(&section.heading));
        let mut in_figures = false;
        for item in &section.items {
            // Consecutive pictures share one flowing row.
            let is_image = matches!(item, Item::Image { .. });
            if is_image && !in_figures {
                body.push_str("<div class=\"figures\">\n");
            } else if !is_image && in_figures {
                body.push_str("</div>\n");
            }
            in_figures = is_image;
            item_html(&mut body, item, &mut scripts)?;
        }
        if in_figures {
            body.push_str("</div>\n");
        }
        body.push_str("</section>\n");
    }
    let toc: String = report
        .sections
        .iter()
        .enumerate()
        .map(|(s, sec)| format!("<a href=\"#s{s}\">{}</a>", escape(&sec.heading)))
        .collect();
    let title = escape(&report.title);
    Ok(format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n<main>\n\
         <header><h1>{title}</h1><p class=\"sub\">drgnfly {version} report · self-contained, works offline</p></header>\n\
         <nav class=\"toc\">{toc}</nav>\n{body}<footer>Written by drgnfly {version}.</footer>\n</main>\n\
         <script>\n{SCRIPT}</script>\n</body>\n</html>\n",
        version = env!("CARGO_PKG_VERSION"),
    ))
}

fn item_html(out: &mut String, item: &Item, scripts: &mut usize) -> VizResult<()> {
    match item {
        Item::Text(t) => {
            for para in t.split("\n\n").filter(|p| !p.trim().is_empty()) {
                let _ = writeln!(out, "<p>{}</p>", escape(para.trim()));
            }
        }
        Item::Table { header, rows } => {
            out.push_str("<table class=\"params\"><thead><tr>");
            for h in header {
                let _ = write!(out, "<th>{}</th>", escape(h));
            }
            out.push_str("</tr></thead><tbody>\n");
            for row in rows {
                out.push_str("<tr>");
                for cell in row {
                    let _ = write!(out, "<td>{}</td>", escape(cell));
                }
                out.push_str("</tr>\n");
            }
            out.push_str("</tbody></table>\n");
        }
        Item::Image { caption, source } => {
            let (mime, bytes) = match source {
                ImageSource::Png(b) => ("image/png", std::borrow::Cow::Borrowed(b)),
                ImageSource::Path(p) => (
                    mime(p),
                    std::borrow::Cow::Owned(std::fs::read(p).map_err(|e| drgnfly_io::Error::io(p, e))?),
                ),
            };
            let data = base64::engine::general_purpose::STANDARD.encode(bytes.as_slice());
            let cap = escape(caption);
            let _ = writeln!(
                out,
                "<figure><img alt=\"{cap}\" src=\"data:{mime};base64,{data}\"><figcaption>{cap}</figcaption></figure>"
            );
        }
        Item::Files(files) => {
            out.push_str("<ul class=\"files\">\n");
            for f in files {
                let e = escape(f);
                let _ = writeln!(out, "<li><a href=\"{e}\"><code>{e}</code></a></li>");
            }
            out.push_str("</ul>\n");
        }
        Item::Scatter(sc) => {
            let enc = sc.encode()?;
            let id = *scripts;
            *scripts += 1;
            let labels_attr =
                if enc.labels.is_some() { format!(" data-labels=\"dfs{id}-labels\"") } else { String::new() };
            let legend = if enc.labels.is_some() { "<div class=\"legend\"></div>" } else { "" };
            let _ = writeln!(
                out,
                "<div class=\"dfs\" data-xy=\"dfs{id}-xy\"{labels_attr} data-meta=\"dfs{id}-meta\">\
                 <h3>{title}</h3><div class=\"row\"><div class=\"plot\"><canvas></canvas><div class=\"tip\"></div></div>{legend}</div>\
                 <div class=\"help\">{n} particles · drag to pan · wheel to zoom · double-click to reset · hover for the particle index · click a class to hide it</div>\n\
                 <script type=\"application/json\" id=\"dfs{id}-meta\">{meta}</script>\n\
                 <script type=\"application/octet-stream\" id=\"dfs{id}-xy\">{xy}</script>",
                title = escape(&sc.title),
                n = sc.x.len(),
                meta = enc.meta_json,
                xy = enc.xy,
            );
            if let Some(l) = enc.labels {
                let _ = writeln!(
                    out,
                    "<script type=\"application/octet-stream\" id=\"dfs{id}-labels\">{l}</script>"
                );
            }
            out.push_str("</div>\n");
        }
    }
    Ok(())
}
