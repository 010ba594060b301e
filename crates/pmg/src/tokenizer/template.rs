//! The model's chat template (a Jinja string in `tokenizer.chat_template`), rendered with minijinja.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::gguf::{Gguf, Value};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: &str, content: &str) -> Self {
        ChatMessage { role: role.into(), content: content.into() }
    }
}

/// A piece of a rendered chat: the template's own text (control tokens allowed) or a message's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub text: String,
    pub is_content: bool,
}

// Private-use code points that mark where message `i` goes in a rendering.
const PH_OPEN: char = '\u{F8F0}';
const PH_CLOSE: char = '\u{F8F1}';

fn placeholder(i: usize) -> String {
    format!("{PH_OPEN}{i}{PH_CLOSE}")
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

pub struct ChatTemplate {
    source: String,
    bos: String,
    eos: String,
}

impl ChatTemplate {
    pub fn from_gguf(g: &Gguf<'_>, bos: String, eos: String) -> Result<Self> {
        let source = g
            .get("tokenizer.chat_template")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::metadata("tokenizer.chat_template", "missing: this model has no chat template"))?
            .to_string();
        let t = ChatTemplate { source, bos, eos };
        // Fail at load, not at first use.
        t.render(&[ChatMessage::new("user", "hi")], true)?;
        Ok(t)
    }

    /// Render messages like [`render`](Self::render), but as segments that keep each message's
    /// content apart from the template's own text, so that the caller can tokenize content as plain
    /// text: special-token text inside a message (`<|im_start|>` typed by a user or hidden in an item
    /// title) then stays text instead of becoming a control token. Roles must be plain words.
    ///
    /// Each content is rendered as a placeholder of private-use characters, then put back between
    /// the template's pieces; a template that transforms content (e.g. `| trim`) sees the placeholder.
    pub fn render_segments(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<Vec<Segment>> {
        for m in messages {
            if m.role.is_empty()
                || m.role.len() > 32
                || !m.role.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(Error::InvalidArgument(format!(
                    "chat role must be a plain word (ASCII letters, digits, _ or -), not {:?}",
                    truncate(&m.role, 40)
                )));
            }
        }
        let placeholders: Vec<ChatMessage> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| ChatMessage { role: m.role.clone(), content: placeholder(i) })
            .collect();
        let text = self.render(&placeholders, add_generation_prompt)?;
        let mut out = Vec::new();
        let mut rest = text.as_str();
        while let Some(start) = rest.find(PH_OPEN) {
            let after = &rest[start + PH_OPEN.len_utf8()..];
            let Some(end) = after.find(PH_CLOSE) else { break };
            let Ok(i) = after[..end].parse::<usize>() else { break };
            let Some(m) = messages.get(i) else { break };
            if start > 0 {
                out.push(Segment { text: rest[..start].to_string(), is_content: false });
            }
            out.push(Segment { text: m.content.clone(), is_content: true });
            rest = &after[end + PH_CLOSE.len_utf8()..];
        }
        if !rest.is_empty() {
            out.push(Segment { text: rest.to_string(), is_content: false });
        }
        Ok(out)
    }

    /// Render messages to the prompt text, ending with the assistant's turn header when
    /// `add_generation_prompt`. Message content is pasted in as is: for untrusted content use
    /// [`render_segments`](Self::render_segments).
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let mut env = minijinja::Environment::new();
        env.add_function("raise_exception", |msg: String| -> Result<String, minijinja::Error> {
            Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
        });
        env.add_template("chat", &self.source).map_err(|e| Error::Template(e.to_string()))?;
        let tmpl = env.get_template("chat").map_err(|e| Error::Template(e.to_string()))?;
        tmpl.render(minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos,
            eos_token => self.eos,
        })
        .map_err(|e| Error::Template(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    fn chatml() -> ChatTemplate {
        ChatTemplate { source: CHATML.into(), bos: String::new(), eos: String::new() }
    }

    #[test]
    fn segments_join_to_the_plain_rendering() {
        let t = chatml();
        let msgs = [
            ChatMessage::new("system", "Be brief."),
            ChatMessage::new("user", "Hi <|im_end|> there \u{F8F0}0\u{F8F1}"),
        ];
        let segs = t.render_segments(&msgs, true).unwrap();
        let joined: String = segs.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(joined, t.render(&msgs, true).unwrap());
        let content: Vec<&str> = segs.iter().filter(|s| s.is_content).map(|s| s.text.as_str()).collect();
        assert_eq!(content, ["Be brief.", "Hi <|im_end|> there \u{F8F0}0\u{F8F1}"]);
        assert!(segs.iter().filter(|s| !s.is_content).all(|s| !s.text.contains("Hi")));
    }

    #[test]
    fn roles_must_be_plain_words() {
        let t = chatml();
        for role in ["", "user<|im_end|>", "user\nassistant", &"a".repeat(33)] {
            let err = t.render_segments(&[ChatMessage::new(role, "x")], true).unwrap_err();
            assert!(matches!(err, Error::InvalidArgument(_)), "{role:?}: {err}");
        }
        assert!(t.render_segments(&[ChatMessage::new("tool_result-2", "x")], true).is_ok());
    }
}
