//! Diagnostics: `file:line:col: message` followed by the source line and a caret.

/// A byte range in the policy source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }
}

/// One error found in a policy, with the position it points at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{col}: {message}")]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
    /// The source line the error is on.
    pub excerpt: String,
    /// Width of the caret underline (at least 1).
    pub width: usize,
}

impl Diagnostic {
    /// Builds a diagnostic for `span` in `src`; line and column are 1-based, the column
    /// counts characters.
    pub fn new(file: &str, src: &str, span: Span, message: impl Into<String>) -> Self {
        let start = span.start.min(src.len());
        let start = (0..=start)
            .rev()
            .find(|&i| src.is_char_boundary(i))
            .unwrap_or(0);
        let line_start = src[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = src[start..].find('\n').map_or(src.len(), |i| start + i);
        let line = src[..start].matches('\n').count() + 1;
        let col = src[line_start..start].chars().count() + 1;
        let end = span.end.clamp(start, line_end);
        let end = (end..=line_end)
            .find(|&i| src.is_char_boundary(i))
            .unwrap_or(line_end);
        let width = src[start..end].chars().count().max(1);
        Diagnostic {
            file: file.to_string(),
            line,
            col,
            message: message.into(),
            excerpt: src[line_start..line_end].trim_end_matches('\r').to_string(),
            width,
        }
    }

    /// The full report: the `file:line:col: message` line, the excerpt and the caret.
    pub fn render(&self) -> String {
        let gutter = self.line.to_string();
        let pad = " ".repeat(gutter.len());
        // Keep tabs so that the caret lines up under tab-indented source.
        let lead: String = self
            .excerpt
            .chars()
            .take(self.col - 1)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        format!(
            "{}:{}:{}: error: {}\n{pad} |\n{gutter} | {}\n{pad} | {lead}{}",
            self.file,
            self.line,
            self.col,
            self.message,
            self.excerpt,
            "^".repeat(self.width)
        )
    }
}

/// Every error found in one policy file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// All diagnostics, rendered with excerpts, separated by blank lines.
    pub fn render(&self) -> String {
        self.0
            .iter()
            .map(Diagnostic::render)
            .collect::<Vec<_>>()
            .join("\n\n")
    }
}
