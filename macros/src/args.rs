//! Parsing `#[host(...)]` arguments into a list of keys and values, each with its span. Nothing is checked
//! here beyond the grammar; [`crate::model`] gives values their meaning.
//!
//! ```text
//! args   := arg (',' arg)* ','?
//! arg    := ident '=' value | ident '(' ... ')'
//! value  := literal | ident
//! ```

use proc_macro2::{Span, TokenStream};
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Ident, Lit, Token};

/// One argument: `key = value` or `key(...)`.
pub(crate) struct Arg {
    pub(crate) key: Ident,
    pub(crate) value: ArgValue,
}

/// What follows an argument's key.
pub(crate) enum ArgValue {
    /// `= "text"`, `= 40`, `= true`.
    Lit(Lit),
    /// `= console`.
    Ident(Ident),
    /// `(...)`: parsed later, by the key's own grammar.
    Group(TokenStream, Span),
}

impl ArgValue {
    /// The span errors about this value point at.
    pub(crate) fn span(&self) -> Span {
        match self {
            ArgValue::Lit(lit) => lit.span(),
            ArgValue::Ident(ident) => ident.span(),
            ArgValue::Group(_, span) => *span,
        }
    }
}

impl Parse for Arg {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let key: Ident = input.parse()?;
        let value = if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            if input.peek(Lit) {
                ArgValue::Lit(input.parse()?)
            } else if input.peek(Ident) {
                ArgValue::Ident(input.parse()?)
            } else {
                return Err(input.error(format!("expected a literal or a name after `{key} =`")));
            }
        } else if input.peek(syn::token::Paren) {
            let content;
            let paren = syn::parenthesized!(content in input);
            ArgValue::Group(content.parse()?, paren.span.join())
        } else {
            return Err(syn::Error::new(key.span(), format!("expected `{key} = ...` or `{key}(...)`")));
        };
        Ok(Arg { key, value })
    }
}

/// Parses the attribute's arguments.
pub(crate) fn parse(args: TokenStream) -> syn::Result<Vec<Arg>> {
    let parser = Punctuated::<Arg, Token![,]>::parse_terminated;
    Ok(parser.parse2(args)?.into_iter().collect())
}

/// Parses a group's content as `key = value` / `key(...)` items (the grammar of the top level).
pub(crate) fn parse_group(content: &TokenStream) -> syn::Result<Vec<Arg>> {
    parse(content.clone())
}

/// A NixOS option path: `a.b."c.d".e`, each segment an identifier or a string literal.
pub(crate) struct OptionPath {
    pub(crate) segments: Vec<String>,
    pub(crate) span: Span,
}

impl Parse for OptionPath {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let span = input.span();
        let mut segments = Vec::new();
        loop {
            if input.peek(syn::LitStr) {
                segments.push(input.parse::<syn::LitStr>()?.value());
            } else {
                segments.push(syn::ext::IdentExt::parse_any(input).map(|i: Ident| i.to_string())?);
            }
            if !input.peek(Token![.]) {
                break;
            }
            input.parse::<Token![.]>()?;
        }
        Ok(OptionPath { segments, span })
    }
}

/// The value of a NixOS option: a literal, one of the instance's outputs, or `self.<field>`.
pub(crate) enum OptionValue {
    /// `"text"`, `42`, `true`.
    Lit(Lit),
    /// `public_ip`, ...
    Ident(Ident),
    /// `self.domain`.
    Field(Ident),
}

/// `path = value`.
pub(crate) struct OptionSetting {
    pub(crate) path: OptionPath,
    pub(crate) value: OptionValue,
    pub(crate) value_span: Span,
}

impl Parse for OptionSetting {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let path: OptionPath = input.parse()?;
        input.parse::<Token![=]>()?;
        let value_span = input.span();
        let value = if input.peek(Lit) {
            OptionValue::Lit(input.parse()?)
        } else if input.peek(Token![self]) {
            input.parse::<Token![self]>()?;
            input.parse::<Token![.]>()?;
            OptionValue::Field(input.parse()?)
        } else if input.peek(Ident) {
            OptionValue::Ident(input.parse()?)
        } else {
            return Err(input.error(
                "expected a literal, one of the instance's outputs (public_ip, private_ip, public_dns, instance_id) \
                 or `self.<field>`",
            ));
        };
        Ok(OptionSetting { path, value, value_span })
    }
}

/// Parses `nixos(...)`'s content.
pub(crate) fn parse_options(content: &TokenStream) -> syn::Result<Vec<OptionSetting>> {
    let parser = Punctuated::<OptionSetting, Token![,]>::parse_terminated;
    Ok(parser.parse2(content.clone())?.into_iter().collect())
}

/// One health check: `http(port = 80, path = "/")` or `command("systemctl", "is-active", "nginx")`.
pub(crate) struct CheckSpec {
    pub(crate) kind: Ident,
    pub(crate) content: TokenStream,
    pub(crate) span: Span,
}

impl Parse for CheckSpec {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let kind: Ident = input.parse()?;
        if !input.peek(syn::token::Paren) {
            return Err(syn::Error::new(
                kind.span(),
                format!("expected `{kind}(...)`: `http(port = 80, path = \"/\")` or `command(\"argv0\", ...)`"),
            ));
        }
        let content;
        let paren = syn::parenthesized!(content in input);
        Ok(CheckSpec { kind, content: content.parse()?, span: paren.span.join() })
    }
}

/// Parses `health_checks(...)`'s content.
pub(crate) fn parse_checks(content: &TokenStream) -> syn::Result<Vec<CheckSpec>> {
    let parser = Punctuated::<CheckSpec, Token![,]>::parse_terminated;
    Ok(parser.parse2(content.clone())?.into_iter().collect())
}

/// Parses `command(...)`'s content: string literals.
pub(crate) fn parse_strings(content: &TokenStream) -> syn::Result<Vec<syn::LitStr>> {
    let parser = Punctuated::<syn::LitStr, Token![,]>::parse_terminated;
    Ok(parser.parse2(content.clone())?.into_iter().collect())
}

/// One tag: `Key = "value"` or `"Key-with-dashes" = "value"`.
pub(crate) struct TagSpec {
    pub(crate) key: String,
    pub(crate) key_span: Span,
    pub(crate) value: syn::LitStr,
}

impl Parse for TagSpec {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let key_span = input.span();
        let key = if input.peek(syn::LitStr) {
            input.parse::<syn::LitStr>()?.value()
        } else {
            syn::ext::IdentExt::parse_any(input).map(|i: Ident| i.to_string())?
        };
        input.parse::<Token![=]>()?;
        Ok(TagSpec { key, key_span, value: input.parse()? })
    }
}

/// Parses `tags(...)`'s content.
pub(crate) fn parse_tags(content: &TokenStream) -> syn::Result<Vec<TagSpec>> {
    let parser = Punctuated::<TagSpec, Token![,]>::parse_terminated;
    Ok(parser.parse2(content.clone())?.into_iter().collect())
}
