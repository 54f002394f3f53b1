//! Plain text from an HTML email body, for campaigns that give no text template.
//!
//! A small scanner, not an HTML parser: email bodies are simple, and the goal is a readable
//! fallback (paragraphs, line breaks, list items, link targets), not a faithful layout.
//! It never fails: anything it does not understand is kept as text.

/// A readable plain-text version of `html`.
///
/// - tags are dropped; `<script>`, `<style>`, `<head>` and comments with their content;
/// - paragraphs, headings, divs, lists and tables start new lines (a blank line between
///   paragraphs), `<br>` breaks a line, list items get `- ` (or `1. ` in `<ol>`);
/// - links keep their target: `<a href="https://x">Shop now</a>` → `Shop now (https://x)`,
///   unless the text already is the target;
/// - images show their `alt` text;
/// - common entities are decoded (`&amp;`, `&nbsp;`, `&#39;`, `&#x2014;`, `&euro;`...);
/// - whitespace runs collapse to one space, as a browser would show them.
pub fn html_to_text(html: &str) -> String {
    let mut out = Out::default();
    let mut rest = html;
    let mut link: Option<(String, usize)> = None;
    let mut lists: Vec<Option<u32>> = Vec::new();
    while let Some(lt) = rest.find('<') {
        out.text(&decode_entities(&rest[..lt]));
        let tail = &rest[lt..];
        if let Some(after) = tail.strip_prefix("<!--") {
            rest = after.find("-->").map_or("", |end| &after[end + 3..]);
            continue;
        }
        let Some(tag) = Tag::parse(tail) else {
            // A `<` that starts no tag (`a < b`) is text.
            out.text("<");
            rest = &tail[1..];
            continue;
        };
        rest = &tail[tag.len..];
        if tag.closing {
            match tag.name.as_str() {
                "a" => {
                    if let Some((href, start)) = link.take() {
                        out.end_link(&href, start);
                    }
                }
                "ul" | "ol" => {
                    lists.pop();
                    out.paragraph();
                }
                name if is_block(name) => out.paragraph(),
                "li" | "tr" => out.line_break(),
                _ => {}
            }
            continue;
        }
        match tag.name.as_str() {
            "script" | "style" | "head" | "title" | "template" if !tag.self_closing => {
                rest = skip_past_closing(rest, &tag.name);
            }
            "br" => out.line_break(),
            "hr" => out.paragraph(),
            "a" => {
                if let Some((href, start)) = link.take() {
                    out.end_link(&href, start);
                }
                if let Some(href) = tag.attr("href") {
                    link = Some((href, out.start_link()));
                }
            }
            "img" => {
                if let Some(alt) = tag.attr("alt") {
                    out.text(&alt);
                }
            }
            "ul" => {
                out.line_break();
                lists.push(None);
            }
            "ol" => {
                out.line_break();
                lists.push(Some(1));
            }
            "li" => {
                out.line_break();
                let marker = match lists.last_mut() {
                    Some(Some(n)) => {
                        *n += 1;
                        format!("{}. ", *n - 1)
                    }
                    _ => "- ".to_owned(),
                };
                out.literal(&marker);
            }
            "tr" => out.line_break(),
            "td" | "th" => out.space(),
            name if is_block(name) => out.paragraph(),
            _ => {}
        }
    }
    out.text(&decode_entities(rest));
    if let Some((href, start)) = link.take() {
        out.end_link(&href, start);
    }
    out.finish()
}

fn is_block(name: &str) -> bool {
    matches!(
        name,
        "p" | "div"
            | "h1"
            | "h2"
            | "h3"
            | "h4"
            | "h5"
            | "h6"
            | "table"
            | "blockquote"
            | "section"
            | "article"
            | "header"
            | "footer"
            | "main"
            | "nav"
            | "aside"
            | "pre"
            | "address"
            | "center"
            | "body"
            | "html"
    )
}

/// `rest` after the `</name>` that closes a skipped element (or nothing if it is never closed).
fn skip_past_closing<'a>(rest: &'a str, name: &str) -> &'a str {
    let lower = rest.to_ascii_lowercase();
    let needle = format!("</{name}");
    match lower.find(&needle) {
        Some(at) => {
            let after = &rest[at..];
            after.find('>').map_or("", |gt| &after[gt + 1..])
        }
        None => "",
    }
}

/// One start or end tag.
struct Tag<'a> {
    name: String,
    closing: bool,
    self_closing: bool,
    attrs: &'a str,
    /// Bytes from `<` to `>` inclusive.
    len: usize,
}

impl<'a> Tag<'a> {
    /// The tag at the start of `s` (which starts with `<`), if it is one.
    fn parse(s: &'a str) -> Option<Tag<'a>> {
        let body = &s[1..];
        let (closing, body) = match body.strip_prefix('/') {
            Some(b) => (true, b),
            None => (false, body),
        };
        let special = body.starts_with('!') || body.starts_with('?');
        let name_len = body
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .unwrap_or(body.len());
        if !special && (name_len == 0 || !body.starts_with(|c: char| c.is_ascii_alphabetic())) {
            return None;
        }
        // Find the closing `>` outside quoted attribute values.
        let mut quote = None;
        let mut end = None;
        for (i, c) in body.char_indices() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '"' | '\'') => quote = Some(c),
                (None, '>') => {
                    end = Some(i);
                    break;
                }
                (None, '<') if !special => return None,
                _ => {}
            }
        }
        let end = end?;
        let inner = &body[..end];
        let name = if special {
            String::new()
        } else {
            inner[..name_len].to_ascii_lowercase()
        };
        let attrs = if special { "" } else { &inner[name_len..] };
        Some(Tag {
            name,
            closing,
            self_closing: inner.trim_end().ends_with('/'),
            attrs,
            len: 1 + usize::from(closing) + end + 1,
        })
    }

    /// The decoded value of attribute `wanted`, if present and not empty.
    fn attr(&self, wanted: &str) -> Option<String> {
        let mut s = self.attrs;
        loop {
            s = s.trim_start_matches(|c: char| c.is_whitespace() || c == '/');
            if s.is_empty() {
                return None;
            }
            let name_end = s
                .find(|c: char| c.is_whitespace() || c == '=' || c == '/')
                .unwrap_or(s.len());
            let name = &s[..name_end];
            s = s[name_end..].trim_start();
            let value = if let Some(v) = s.strip_prefix('=') {
                let v = v.trim_start();
                let (value, rest) = match v.chars().next() {
                    Some(q @ ('"' | '\'')) => {
                        let inner = &v[1..];
                        let close = inner.find(q).unwrap_or(inner.len());
                        (&inner[..close], inner.get(close + 1..).unwrap_or(""))
                    }
                    _ => {
                        let close = v.find(char::is_whitespace).unwrap_or(v.len());
                        (&v[..close], &v[close..])
                    }
                };
                s = rest;
                value
            } else {
                ""
            };
            if name.eq_ignore_ascii_case(wanted) {
                let value = decode_entities(value.trim());
                return (!value.is_empty()).then_some(value);
            }
        }
    }
}

/// The text being built, with whitespace and line breaks decided lazily so that tags next to
/// each other never produce runs of blank lines or spaces.
#[derive(Default)]
struct Out {
    buf: String,
    space: bool,
    newlines: usize,
}

impl Out {
    fn text(&mut self, s: &str) {
        for c in s.chars() {
            if c.is_whitespace() {
                self.space = true;
            } else {
                self.flush();
                self.buf.push(c);
            }
        }
    }

    /// Text written as is (list markers), after any pending break.
    fn literal(&mut self, s: &str) {
        self.flush();
        self.buf.push_str(s);
    }

    fn flush(&mut self) {
        if self.buf.is_empty() {
            // Leading breaks and spaces mean nothing.
        } else if self.newlines > 0 {
            let trimmed = self.buf.trim_end_matches([' ', '\t']).len();
            self.buf.truncate(trimmed);
            let already = self.buf.len() - self.buf.trim_end_matches('\n').len();
            for _ in already..self.newlines.min(2) {
                self.buf.push('\n');
            }
        } else if self.space && !self.buf.ends_with([' ', '\n']) {
            self.buf.push(' ');
        }
        self.space = false;
        self.newlines = 0;
    }

    fn space(&mut self) {
        self.space = true;
    }

    fn line_break(&mut self) {
        self.newlines = self.newlines.max(1);
        self.space = false;
    }

    fn paragraph(&mut self) {
        self.newlines = 2;
        self.space = false;
    }

    /// Where a link's text starts, after any pending space or break.
    fn start_link(&mut self) -> usize {
        self.flush();
        self.buf.len()
    }

    fn end_link(&mut self, href: &str, start: usize) {
        let text = self.buf.get(start..).unwrap_or("").trim();
        let bare = |u: &str| {
            u.trim_start_matches("mailto:")
                .trim_start_matches("tel:")
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_owned()
        };
        let useless = href.starts_with('#') || href.starts_with("javascript:");
        if useless || bare(text) == bare(href) {
            return;
        }
        if text.is_empty() {
            self.text(href);
        } else {
            let was_space = self.space;
            self.space = true;
            self.text(&format!("({href})"));
            self.space = was_space;
        }
    }

    fn finish(self) -> String {
        let mut out = String::with_capacity(self.buf.len());
        for line in self.buf.lines() {
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out.trim().to_owned()
    }
}

/// Decodes the entities found in email HTML; unknown ones are kept as written.
fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let tail = &rest[amp..];
        let decoded = tail
            .find(';')
            .filter(|&semi| semi <= 10)
            .and_then(|semi| entity(&tail[1..semi]).map(|c| (c, semi)));
        match decoded {
            Some((c, semi)) => {
                out.push(c);
                rest = &tail[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn entity(name: &str) -> Option<char> {
    if let Some(num) = name.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => num.parse().ok()?,
        };
        return char::from_u32(code).filter(|c| *c != '\0');
    }
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => ' ',
        "copy" => '©',
        "reg" => '®',
        "trade" => '™',
        "hellip" => '…',
        "mdash" => '—',
        "ndash" => '–',
        "lsquo" => '‘',
        "rsquo" => '’',
        "ldquo" => '“',
        "rdquo" => '”',
        "laquo" => '«',
        "raquo" => '»',
        "bull" => '•',
        "middot" => '·',
        "euro" => '€',
        "pound" => '£',
        "yen" => '¥',
        "cent" => '¢',
        "deg" => '°',
        "times" => '×',
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn paragraphs_and_breaks_become_lines() {
        assert_eq!(
            html_to_text("<p>Hello   Ann,</p>\n\n<p>Line one<br>line\n two</p><div>Bye</div>"),
            "Hello Ann,\n\nLine one\nline two\n\nBye"
        );
    }

    #[test]
    fn links_keep_their_target() {
        assert_eq!(
            html_to_text(r#"<p>Come <a href="https://shop.example/?a=1&amp;b=2">back</a> now</p>"#),
            "Come back (https://shop.example/?a=1&b=2) now"
        );
        assert_eq!(
            html_to_text(r#"<a href="https://shop.example/">https://shop.example</a>"#),
            "https://shop.example"
        );
        assert_eq!(
            html_to_text(r#"Write to <a href="mailto:hi@shop.example">hi@shop.example</a>."#),
            "Write to hi@shop.example."
        );
        assert_eq!(
            html_to_text(
                r##"<a href="#top">Top</a> <a href="https://x.example"><img src="l.png"></a>"##
            ),
            "Top https://x.example"
        );
    }

    #[test]
    fn lists_get_markers() {
        assert_eq!(
            html_to_text(
                "<p>Top picks:</p><ul><li>Kind of Blue</li><li>Giant Steps</li></ul><ol><li>one</li><li>two</li></ol><p>End</p>"
            ),
            "Top picks:\n\n- Kind of Blue\n- Giant Steps\n\n1. one\n2. two\n\nEnd"
        );
    }

    #[test]
    fn head_scripts_styles_and_comments_are_dropped() {
        let html = "<!DOCTYPE html><html><head><title>T</title><style>p{color:red}</style></head>\
                    <body><!-- hidden <p>x</p> --><script>if (a < b) {}</script><h1>Hi</h1>Text</body></html>";
        assert_eq!(html_to_text(html), "Hi\n\nText");
    }

    #[test]
    fn entities_are_decoded_and_unknown_ones_kept() {
        assert_eq!(
            html_to_text("Tom &amp; Jerry&nbsp;&#39;s &#x2014; &euro;5 &lt;b&gt; &bogus; AT&T"),
            "Tom & Jerry 's — €5 <b> &bogus; AT&T"
        );
    }

    #[test]
    fn tables_and_images() {
        assert_eq!(
            html_to_text(
                r#"<table><tr><td>Album</td><td>$10</td></tr><tr><td><img alt="Cover"></td></tr></table>"#
            ),
            "Album $10\nCover"
        );
    }

    #[test]
    fn malformed_input_is_kept_as_text() {
        assert_eq!(html_to_text("a < b and c <d"), "a < b and c <d");
        assert_eq!(html_to_text("<p>open <a href=\"x\">link"), "open link (x)");
        assert_eq!(html_to_text(""), "");
        assert_eq!(html_to_text("<p attr='>'>quoted</p>"), "quoted");
    }

    #[derive(Debug, Clone)]
    enum Node {
        Text(String),
        Element(&'static str, Vec<Node>),
        Link(String, Vec<Node>),
        Br,
    }

    fn render(node: &Node, out: &mut String) {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Element(name, children) => {
                out.push_str(&format!("<{name} class=\"c\">"));
                children.iter().for_each(|c| render(c, out));
                out.push_str(&format!("</{name}>"));
            }
            Node::Link(href, children) => {
                out.push_str(&format!("<a href=\"{href}\">"));
                children.iter().for_each(|c| render(c, out));
                out.push_str("</a>");
            }
            Node::Br => out.push_str("<br/>"),
        }
    }

    fn tree() -> impl Strategy<Value = Node> {
        let leaf = prop_oneof![
            "[a-zA-Z0-9 .,!\n]{0,12}".prop_map(Node::Text),
            Just(Node::Br),
        ];
        leaf.prop_recursive(4, 40, 5, |inner| {
            prop_oneof![
                (
                    prop::sample::select(vec![
                        "p", "div", "span", "b", "h1", "ul", "li", "table", "td", "em"
                    ]),
                    prop::collection::vec(inner.clone(), 0..5)
                )
                    .prop_map(|(name, children)| Node::Element(name, children)),
                (
                    "https://[a-z]{1,8}\\.example/[a-z]{0,5}",
                    prop::collection::vec(inner, 0..3)
                )
                    .prop_map(|(href, children)| Node::Link(href, children)),
            ]
        })
    }

    proptest! {
        #[test]
        fn never_panics(input in ".{0,200}") {
            let _ = html_to_text(&input);
        }

        #[test]
        fn never_panics_on_tag_soup(input in "(<|>|/|a|p|br|\"|'|=|&|;|#|x|!|-| |href){0,60}") {
            let _ = html_to_text(&input);
        }

        #[test]
        fn well_formed_html_leaves_no_tags(nodes in prop::collection::vec(tree(), 0..6)) {
            let mut html = String::new();
            nodes.iter().for_each(|n| render(n, &mut html));
            let text = html_to_text(&html);
            prop_assert!(!text.contains('<') && !text.contains('>'), "{html:?} -> {text:?}");
            prop_assert!(!text.contains("\n\n\n"), "{text:?}");
            prop_assert_eq!(text.trim(), text.as_str());
        }
    }
}
