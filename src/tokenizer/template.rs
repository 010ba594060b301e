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

    /// Render messages to the prompt text, ending with the assistant's turn header when
    /// `add_generation_prompt`.
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
