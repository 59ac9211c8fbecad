//! Reading an OpenVPN configuration file the way OpenVPN splits it: one directive per line,
//! words separated by blanks, `"..."` and `'...'` quoting, backslash escapes, comments that
//! start with `#` or `;` at a word boundary, and inline `<tag>...</tag>` blocks. Pure: text
//! in, directives out.

/// One directive line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Directive {
    /// 1-based line number, for messages.
    pub line: usize,
    pub name: String,
    pub args: Vec<String>,
}

impl Directive {
    pub fn arg(&self, index: usize) -> Option<&str> {
        self.args.get(index).map(String::as_str)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OvpnConf {
    pub directives: Vec<Directive>,
    /// Tags of the inline blocks (`ca`, `key`, `tls-crypt`...); their contents are skipped.
    pub inline_blocks: Vec<String>,
}

impl OvpnConf {
    pub fn parse(text: &str) -> Self {
        let mut conf = OvpnConf::default();
        let mut in_block: Option<String> = None;
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if let Some(tag) = &in_block {
                if line == format!("</{tag}>") {
                    in_block = None;
                }
                continue;
            }
            if let Some(tag) = line.strip_prefix('<').and_then(|l| l.strip_suffix('>')) {
                if !tag.starts_with('/') && !tag.is_empty() {
                    conf.inline_blocks.push(tag.to_owned());
                    in_block = Some(tag.to_owned());
                    continue;
                }
            }
            let mut words = split_words(line);
            if words.is_empty() {
                continue;
            }
            let first = words.remove(0);
            let name = first.strip_prefix("--").unwrap_or(&first).to_owned();
            conf.directives.push(Directive { line: index + 1, name, args: words });
        }
        conf
    }

    /// The last occurrence of a directive: for single-valued options, the one that counts.
    pub fn last(&self, name: &str) -> Option<&Directive> {
        self.directives.iter().rev().find(|d| d.name == name)
    }

    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Directive> + 'a {
        self.directives.iter().filter(move |d| d.name == name)
    }

    pub fn has(&self, name: &str) -> bool {
        self.last(name).is_some()
    }

    /// Whether this is a server's configuration rather than a client's.
    pub fn is_server(&self) -> bool {
        self.has("server")
            || self.has("server-bridge")
            || self.has("tls-server")
            || self.last("mode").and_then(|d| d.arg(0)) == Some("server")
    }

    /// A numeric directive's first argument, if present and numeric.
    pub fn number(&self, name: &str) -> Option<u64> {
        self.last(name).and_then(|d| d.arg(0)).and_then(|v| v.parse().ok())
    }
}

/// Splits one line into words as OpenVPN does (also used for the verifier's command).
pub fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some('\''), '\'') | (Some('"'), '"') => quote = None,
            (Some('"') | None, '\\') => {
                if let Some(next) = chars.next() {
                    word.push(next);
                }
                in_word = true;
            }
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '#' | ';') if !in_word => break,
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_are_split_like_openvpn_does() {
        let conf = OvpnConf::parse(
            "# comment\n; another\n\nport 1194\nhand-window 70 # trailing\n\
             auth-user-pass-verify \"/usr/bin/ovpn-mfa --dir /srv/mfa dir verify\" via-file\n\
             setenv X 'a \"b\"' ;c\n  push \"route 10.0.0.0 255.0.0.0\"\npath a\\ b\n",
        );
        let names: Vec<_> = conf.directives.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(
            names,
            ["port", "hand-window", "auth-user-pass-verify", "setenv", "push", "path"]
        );
        assert_eq!(conf.number("hand-window"), Some(70));
        let verify = conf.last("auth-user-pass-verify").unwrap();
        assert_eq!(verify.args, ["/usr/bin/ovpn-mfa --dir /srv/mfa dir verify", "via-file"]);
        assert_eq!(verify.line, 6);
        assert_eq!(conf.last("setenv").unwrap().args, ["X", "a \"b\""]);
        assert_eq!(conf.last("path").unwrap().args, ["a b"]);
        assert!(!conf.is_server());
    }

    #[test]
    fn inline_blocks_are_noted_and_skipped() {
        let conf = OvpnConf::parse(
            "server 10.8.0.0 255.255.255.0\n<tls-crypt>\nreneg-sec 0\n</tls-crypt>\nverb 3\n",
        );
        assert_eq!(conf.inline_blocks, ["tls-crypt"]);
        assert!(!conf.has("reneg-sec"));
        assert!(conf.has("verb") && conf.is_server());
    }

    #[test]
    fn the_last_occurrence_wins() {
        let conf = OvpnConf::parse("reneg-sec 0\nreneg-sec 3600\nmode server\n");
        assert_eq!(conf.number("reneg-sec"), Some(3600));
        assert_eq!(conf.all("reneg-sec").count(), 2);
        assert!(conf.is_server());
    }
}
