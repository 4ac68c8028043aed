//! Parsing and validation of what `#[wix_cluster::main]` reads: its arguments ([`Args`])
//! and the function it is put on ([`MainFn`]). Every mistake is recorded in [`Errors`].

use std::fmt::Display;

use proc_macro2::{Group, Span, TokenStream};
use quote::quote;
use syn::meta::ParseNestedMeta;
use syn::parse::{Parse, ParseStream, Parser};
use syn::spanned::Spanned;
use syn::{Attribute, Expr, FnArg, Ident, Lit, Path, Signature, Token, Visibility, token};

use crate::errors::Errors;
use crate::units::{self, Quantity};

/// Plugins that may be named by their bare name, `plugins(Respawn)`; they live in
/// `::wix_cluster::__private::plugins`.
const BUILTIN_PLUGINS: [&str; 6] = [
    "Respawn",
    "Graceful",
    "LifecycleLog",
    "Stall",
    "Statsd",
    "Autoscale",
];

/// The built-in plugins a cluster runs unless `without(...)` names them
/// (`::wix_cluster::__private::DefaultPlugin`'s variants).
const DEFAULT_PLUGINS: [&str; 3] = ["Respawn", "Graceful", "Stall"];

/// How the function must look; quoted in the errors about the function.
const EXPECTED_FN: &str = "`async fn main(worker: wix_cluster::Worker)`";

// ---------------------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------------------

/// The valid arguments of one `#[wix_cluster::main(...)]`.
///
/// A field is `None` (or empty) when its argument was not given, or was given with a
/// mistake that has been recorded: expansion uses only what is valid, so that the
/// type checker still sees the rest.
#[derive(Default)]
pub(crate) struct Args {
    pub(crate) workers: Option<Setting<Workers>>,
    pub(crate) plugins: Vec<Plugin>,
    /// `without(Respawn, Stall)`: default plugins turned off.
    pub(crate) without: Vec<Ident>,
    pub(crate) single_process: Option<Setting<SingleProcess>>,
    pub(crate) flavor: Option<Setting<Flavor>>,
    pub(crate) worker_threads: Option<Setting<usize>>,
    /// `management = "127.0.0.1:8084"`, checked to be a socket address.
    pub(crate) management: Option<Setting<String>>,
    /// `management_page = admin_pages`: a function returning `axum::Router`.
    pub(crate) management_page: Option<Setting<Path>>,
    /// `watch = true`: upgrade the cluster when the program file changes.
    pub(crate) watch: Option<Setting<bool>>,
    /// `request_metrics = false`: no request metrics from `http::serve`.
    pub(crate) request_metrics: Option<Setting<bool>>,
    /// `header_read_timeout = "10s"`, in nanoseconds.
    pub(crate) header_read_timeout: Option<Setting<u64>>,
    /// `idle_timeout = "60s"`, in nanoseconds.
    pub(crate) idle_timeout: Option<Setting<u64>>,
    /// `body_read_timeout = "30s"`, in nanoseconds.
    pub(crate) body_read_timeout: Option<Setting<u64>>,
    /// `max_header_bytes = "64KiB"` (or a number of bytes), from 8 KiB to 16 MiB.
    pub(crate) max_header_bytes: Option<Setting<u64>>,
}

/// One argument's value, with the spans that generated code points back to.
pub(crate) struct Setting<T> {
    /// The argument's name as the user wrote it (`workers`).
    pub(crate) key: Ident,
    pub(crate) value: T,
    /// Where the value was written (`4`, `"multi_thread"`).
    pub(crate) span: Span,
}

/// `workers = 4` or `workers = "auto"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Workers {
    Count(usize),
    /// As many as CPUs the process may use.
    Auto,
}

/// `single_process = "auto" | "always" | "never"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SingleProcess {
    Auto,
    Always,
    Never,
}

/// `flavor = "current_thread" | "multi_thread"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flavor {
    CurrentThread,
    MultiThread,
}

/// One entry of `plugins(...)`: `Graceful`, `Respawn(max_deaths = 5)`, `my_mod::MyPlugin`.
pub(crate) struct Plugin {
    pub(crate) ty: PluginType,
    /// `key = value` pairs, each becoming a `.key(value)` call, in the order written.
    pub(crate) settings: Vec<PluginSetting>,
}

/// The type a plugin entry names.
pub(crate) enum PluginType {
    /// A bare built-in name (`Respawn`), found in `::wix_cluster::__private::plugins`.
    Builtin(Ident),
    /// Any other path, resolved in the user's scope as written.
    User(Path),
}

/// `key = value` inside a plugin entry's parentheses.
pub(crate) struct PluginSetting {
    pub(crate) key: Ident,
    pub(crate) value: SettingValue,
}

/// The value of a plugin setting.
pub(crate) enum SettingValue {
    /// Passed on as written: any expression but a string literal that starts like a
    /// number, such as `5`, `Duration::from_secs(5)` or `"localhost:9090"`.
    Expr(Expr),
    /// A string literal read as a duration or a size (`"30s"`, `"512MiB"`), with the span
    /// of the literal.
    Quantity(Quantity, Span),
}

/// The names `#[wix_cluster::main(...)]` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Argument {
    Workers,
    Plugins,
    Without,
    SingleProcess,
    Flavor,
    WorkerThreads,
    Management,
    ManagementPage,
    Watch,
    RequestMetrics,
    HeaderReadTimeout,
    IdleTimeout,
    BodyReadTimeout,
    MaxHeaderBytes,
}

impl Argument {
    const ALL: [Self; 14] = [
        Self::Workers,
        Self::Plugins,
        Self::Without,
        Self::SingleProcess,
        Self::Flavor,
        Self::WorkerThreads,
        Self::Management,
        Self::ManagementPage,
        Self::Watch,
        Self::RequestMetrics,
        Self::HeaderReadTimeout,
        Self::IdleTimeout,
        Self::BodyReadTimeout,
        Self::MaxHeaderBytes,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Workers => "workers",
            Self::Plugins => "plugins",
            Self::Without => "without",
            Self::SingleProcess => "single_process",
            Self::Flavor => "flavor",
            Self::WorkerThreads => "worker_threads",
            Self::Management => "management",
            Self::ManagementPage => "management_page",
            Self::Watch => "watch",
            Self::RequestMetrics => "request_metrics",
            Self::HeaderReadTimeout => "header_read_timeout",
            Self::IdleTimeout => "idle_timeout",
            Self::BodyReadTimeout => "body_read_timeout",
            Self::MaxHeaderBytes => "max_header_bytes",
        }
    }

    /// A correct use, quoted in errors.
    fn example(self) -> &'static str {
        match self {
            Self::Workers => "workers = 4",
            Self::Plugins => "plugins(Graceful, Respawn(max_deaths = 5))",
            Self::Without => "without(Stall)",
            Self::SingleProcess => "single_process = \"auto\"",
            Self::Flavor => "flavor = \"multi_thread\"",
            Self::WorkerThreads => "worker_threads = 2",
            Self::Management => "management = \"127.0.0.1:8084\"",
            Self::ManagementPage => "management_page = admin_pages",
            Self::Watch => "watch = true",
            Self::RequestMetrics => "request_metrics = false",
            Self::HeaderReadTimeout => "header_read_timeout = \"10s\"",
            Self::IdleTimeout => "idle_timeout = \"60s\"",
            Self::BodyReadTimeout => "body_read_timeout = \"30s\"",
            Self::MaxHeaderBytes => "max_header_bytes = \"32KiB\"",
        }
    }

    /// The argument named `ident`.
    fn find_name(ident: &Ident) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|argument| ident == argument.name())
    }

    /// The argument `path` names, with the name as written.
    fn find(path: &Path) -> Option<(Self, &Ident)> {
        let ident = path.get_ident()?;
        let argument = Self::ALL
            .into_iter()
            .find(|argument| ident == argument.name())?;
        Some((argument, ident))
    }
}

/// Parses the tokens inside `#[wix_cluster::main(...)]`, recording every mistake in
/// `errors` and returning the arguments that are valid.
pub(crate) fn parse_args(tokens: TokenStream, errors: &mut Errors) -> Args {
    let mut reader = ArgsReader {
        args: Args::default(),
        seen: Vec::new(),
        errors,
    };
    let parser = syn::meta::parser(|meta| reader.argument(&meta));
    if let Err(error) = parser.parse2(tokens) {
        // A syntax error that could not be stepped over: what was read before it stands.
        reader.errors.push(error);
    }
    reader.finish()
}

/// State while reading the arguments one by one.
struct ArgsReader<'e> {
    args: Args,
    /// Arguments met so far, valid or not, to report duplicates.
    seen: Vec<Argument>,
    errors: &'e mut Errors,
}

impl ArgsReader<'_> {
    /// Reads one `key = value` or `key(...)`.
    ///
    /// A mistake in the value is recorded and the value stepped over, so that the next
    /// argument is still read; only a syntax error that cannot be stepped over is
    /// returned (and ends the reading).
    fn argument(&mut self, meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
        let Some((argument, key)) = Argument::find(&meta.path) else {
            let known = Argument::ALL.map(|argument| format!("`{}`", argument.name()));
            self.errors.spanned(
                &meta.path,
                format!(
                    "unknown argument `{}`; expected {}",
                    path_to_string(&meta.path),
                    alternatives(&known)
                ),
            );
            return skip_value(meta);
        };
        let key = key.clone();
        if self.seen.contains(&argument) {
            self.errors
                .at(key.span(), format_args!("`{key}` set multiple times"));
            return skip_value(meta);
        }
        self.seen.push(argument);

        if argument == Argument::Plugins {
            return self.plugins(meta);
        }
        if argument == Argument::Without {
            return self.without(meta);
        }
        let Some(value) = self.value(meta, argument)? else {
            return Ok(());
        };
        match argument {
            Argument::Workers => self.args.workers = self.workers(&key, &value),
            Argument::WorkerThreads => self.args.worker_threads = self.count(&key, &value),
            Argument::SingleProcess => {
                self.args.single_process = self.choice(
                    &key,
                    &value,
                    &[
                        ("auto", SingleProcess::Auto),
                        ("always", SingleProcess::Always),
                        ("never", SingleProcess::Never),
                    ],
                );
            }
            Argument::Flavor => {
                self.args.flavor = self.choice(
                    &key,
                    &value,
                    &[
                        ("current_thread", Flavor::CurrentThread),
                        ("multi_thread", Flavor::MultiThread),
                    ],
                );
            }
            Argument::Management => self.args.management = self.socket_address(&key, &value),
            Argument::ManagementPage => self.args.management_page = self.function(&key, &value),
            Argument::Watch => self.args.watch = self.boolean(&key, &value),
            Argument::RequestMetrics => self.args.request_metrics = self.boolean(&key, &value),
            Argument::HeaderReadTimeout => {
                self.args.header_read_timeout = self.duration(&key, &value);
            }
            Argument::IdleTimeout => self.args.idle_timeout = self.duration(&key, &value),
            Argument::BodyReadTimeout => {
                self.args.body_read_timeout = self.duration(&key, &value);
            }
            Argument::MaxHeaderBytes => {
                self.args.max_header_bytes = self.header_bytes(&key, &value)
            }
            // Read above: they take `(...)`, not a value.
            Argument::Plugins | Argument::Without => {}
        }
        Ok(())
    }

    /// Validates a string literal that must be a socket address (`"127.0.0.1:8084"`).
    fn socket_address(&mut self, key: &Ident, value: &Expr) -> Option<Setting<String>> {
        let Some(Lit::Str(lit)) = literal(value) else {
            self.errors.spanned(
                value,
                format_args!(
                    "`{key}` takes a string, an address like `{key} = \"127.0.0.1:8084\"`"
                ),
            );
            return None;
        };
        let written = lit.value();
        if written.trim().parse::<std::net::SocketAddr>().is_err() {
            self.errors.at(
                lit.span(),
                format_args!(
                    "`{key}` {written:?} is not an address: expected an IP address and a port, \
                     like \"127.0.0.1:8084\" or \"0.0.0.0:0\""
                ),
            );
            return None;
        }
        Some(Setting {
            key: key.clone(),
            value: written,
            span: lit.span(),
        })
    }

    /// Validates a duration string literal of more than 0 (`"10s"`), in nanoseconds.
    fn duration(&mut self, key: &Ident, value: &Expr) -> Option<Setting<u64>> {
        let example = Argument::find_name(key).map_or("\"10s\"", |a| a.example());
        let Some(Lit::Str(lit)) = literal(value) else {
            self.errors.spanned(
                value,
                format_args!("`{key}` takes a duration string, like `{example}`"),
            );
            return None;
        };
        match units::parse(&lit.value()) {
            Some(Ok(Quantity::Duration { nanos })) if nanos > 0 => Some(Setting {
                key: key.clone(),
                value: nanos,
                span: lit.span(),
            }),
            Some(Err(error)) => {
                self.errors.at(lit.span(), error);
                None
            }
            _ => {
                self.errors.at(
                    lit.span(),
                    format_args!("`{key}` takes a duration of more than 0, like `{example}`"),
                );
                None
            }
        }
    }

    /// Validates a size string (`"64KiB"`) or an integer literal of bytes, from 8 KiB
    /// (hyper's smallest HTTP/1 read buffer) to 16 MiB.
    fn header_bytes(&mut self, key: &Ident, value: &Expr) -> Option<Setting<u64>> {
        const RANGE: std::ops::RangeInclusive<u64> = (8 << 10)..=(16 << 20);
        let (bytes, span) = match literal(value) {
            Some(Lit::Int(lit)) => (lit.base10_parse::<u64>().ok(), lit.span()),
            Some(Lit::Str(lit)) => match units::parse(&lit.value()) {
                Some(Ok(Quantity::Size { bytes })) => (Some(bytes), lit.span()),
                Some(Err(error)) => {
                    self.errors.at(lit.span(), error);
                    return None;
                }
                _ => (None, lit.span()),
            },
            _ => (None, value.span()),
        };
        match bytes {
            Some(bytes) if RANGE.contains(&bytes) => Some(Setting {
                key: key.clone(),
                value: bytes,
                span,
            }),
            _ => {
                self.errors.at(
                    span,
                    format_args!(
                        "`{key}` takes a size from 8KiB to 16MiB, like `{key} = \"32KiB\"`, \
                         or a number of bytes"
                    ),
                );
                None
            }
        }
    }

    /// Validates a `true` or `false` literal.
    fn boolean(&mut self, key: &Ident, value: &Expr) -> Option<Setting<bool>> {
        let Some(Lit::Bool(lit)) = literal(value) else {
            self.errors.spanned(
                value,
                format_args!("`{key}` takes `true` or `false`, like `{key} = true`"),
            );
            return None;
        };
        Some(Setting {
            key: key.clone(),
            value: lit.value,
            span: lit.span(),
        })
    }

    /// Validates the name of a function (a path), called once at start-up.
    fn function(&mut self, key: &Ident, value: &Expr) -> Option<Setting<Path>> {
        let path = match value {
            Expr::Path(expr) if expr.qself.is_none() => &expr.path,
            Expr::Group(group) => return self.function(key, &group.expr),
            _ => {
                self.errors.spanned(
                    value,
                    format_args!(
                        "`{key}` takes the name of a function returning `axum::Router`, like \
                         `{key} = admin_pages`"
                    ),
                );
                return None;
            }
        };
        Some(Setting {
            key: key.clone(),
            value: path.clone(),
            span: value.span(),
        })
    }

    /// Reads the `= <expression>` after the name of an argument that takes a value.
    fn value(
        &mut self,
        meta: &ParseNestedMeta<'_>,
        argument: Argument,
    ) -> syn::Result<Option<Expr>> {
        if meta.input.peek(Token![=]) {
            return meta.value()?.parse().map(Some);
        }
        self.errors.spanned(
            &meta.path,
            format_args!(
                "expected `{} = ...`, like `{}`",
                argument.name(),
                argument.example()
            ),
        );
        skip_value(meta)?;
        Ok(None)
    }

    /// Validates `workers`: a count, or `"auto"`.
    fn workers(&mut self, key: &Ident, value: &Expr) -> Option<Setting<Workers>> {
        if let Some(Lit::Str(lit)) = literal(value) {
            let written = lit.value();
            if written.trim() == "auto" {
                return Some(Setting {
                    key: key.clone(),
                    value: Workers::Auto,
                    span: lit.span(),
                });
            }
            if written.trim().parse::<usize>().is_err() {
                self.errors.at(
                    lit.span(),
                    format_args!(
                        "unknown `{key}` {written:?}; expected a number, like `{key} = 4`, \
                         or \"auto\" (one per CPU the process may use)"
                    ),
                );
                return None;
            }
        }
        let count = self.count(key, value)?;
        Some(Setting {
            key: count.key,
            value: Workers::Count(count.value),
            span: count.span,
        })
    }

    /// Validates a count (`workers`, `worker_threads`): an integer literal, at least 1.
    fn count(&mut self, key: &Ident, value: &Expr) -> Option<Setting<usize>> {
        let lit = match literal(value) {
            Some(Lit::Int(lit)) => lit,
            Some(Lit::Str(lit)) if lit.value().trim().parse::<usize>().is_ok() => {
                self.errors.at(
                    lit.span(),
                    format_args!(
                        "`{key}` takes a number, not a string: write `{key} = {}`",
                        lit.value().trim()
                    ),
                );
                return None;
            }
            _ => {
                self.errors.spanned(
                    value,
                    format_args!("`{key}` takes an integer literal, like `{key} = 4`"),
                );
                return None;
            }
        };
        match lit.base10_parse::<usize>() {
            Ok(0) => {
                self.errors
                    .at(lit.span(), format_args!("`{key}` must be at least 1"));
                None
            }
            Ok(value) => Some(Setting {
                key: key.clone(),
                value,
                span: lit.span(),
            }),
            Err(error) => {
                self.errors.push(error);
                None
            }
        }
    }

    /// Validates a string literal that must be one of `choices`.
    fn choice<T: Copy>(
        &mut self,
        key: &Ident,
        value: &Expr,
        choices: &[(&str, T)],
    ) -> Option<Setting<T>> {
        let names: Vec<String> = choices
            .iter()
            .map(|(name, _)| format!("\"{name}\""))
            .collect();
        let Some(Lit::Str(lit)) = literal(value) else {
            self.errors.spanned(
                value,
                format_args!("`{key}` takes a string: {}", alternatives(&names)),
            );
            return None;
        };
        let written = lit.value();
        let Some(&(_, choice)) = choices.iter().find(|(name, _)| *name == written) else {
            self.errors.at(
                lit.span(),
                format_args!(
                    "unknown `{key}` {written:?}; expected {}",
                    alternatives(&names)
                ),
            );
            return None;
        };
        Some(Setting {
            key: key.clone(),
            value: choice,
            span: lit.span(),
        })
    }

    /// Reads `plugins(...)`.
    fn plugins(&mut self, meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
        if !meta.input.peek(token::Paren) {
            self.errors.spanned(
                &meta.path,
                format_args!(
                    "expected `plugins(...)`, like `{}`",
                    Argument::Plugins.example()
                ),
            );
            return skip_value(meta);
        }
        meta.parse_nested_meta(|entry| self.plugin(&entry))
    }

    /// Reads `without(...)`: default plugins, by name, turned off.
    fn without(&mut self, meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
        if !meta.input.peek(token::Paren) {
            self.errors.spanned(
                &meta.path,
                format_args!(
                    "expected `without(...)`, like `{}`",
                    Argument::Without.example()
                ),
            );
            return skip_value(meta);
        }
        meta.parse_nested_meta(|entry| {
            let defaults = DEFAULT_PLUGINS.map(|name| format!("`{name}`"));
            let name = path_to_string(&entry.path);
            let ident = entry
                .path
                .get_ident()
                .filter(|ident| DEFAULT_PLUGINS.iter().any(|default| *ident == default));
            let Some(ident) = ident else {
                self.errors.spanned(
                    &entry.path,
                    format_args!(
                        "`{name}` is not a default plugin; `without(...)` turns off {}",
                        alternatives(&defaults)
                    ),
                );
                return skip_value(&entry);
            };
            if !entry.input.is_empty() && !entry.input.peek(Token![,]) {
                self.errors.spanned(
                    &entry.path,
                    format_args!("`without(...)` takes plugin names only, like `without({name})`"),
                );
                return skip_value(&entry);
            }
            if self.args.without.contains(ident) {
                self.errors
                    .spanned(ident, format_args!("`{name}` listed more than once"));
                return Ok(());
            }
            self.args.without.push(ident.clone());
            Ok(())
        })
    }

    /// Reads one entry of `plugins(...)`: `Path` or `Path(key = value, ...)`.
    fn plugin(&mut self, entry: &ParseNestedMeta<'_>) -> syn::Result<()> {
        let name = path_to_string(&entry.path);
        if entry.input.peek(Token![=]) {
            self.errors.spanned(
                &entry.path,
                format_args!(
                    "expected a plugin, `{name}` or `{name}(key = value, ...)`, not `{name} = ...`"
                ),
            );
            return skip_value(entry);
        }
        let mut settings = Vec::new();
        if entry.input.peek(token::Paren) {
            // Every key met, valid value or not, to report repeated keys.
            let mut keys = Vec::new();
            entry.parse_nested_meta(|setting| {
                self.plugin_setting(&setting, &mut keys, &mut settings)
            })?;
        }
        if self
            .args
            .plugins
            .iter()
            .any(|plugin| plugin.ty.name() == name)
        {
            self.errors.spanned(
                &entry.path,
                format_args!("plugin `{name}` listed more than once"),
            );
            return Ok(());
        }
        let ty = match entry.path.get_ident() {
            Some(ident) if BUILTIN_PLUGINS.iter().any(|builtin| ident == builtin) => {
                PluginType::Builtin(ident.clone())
            }
            _ => PluginType::User(entry.path.clone()),
        };
        if matches!(&ty, PluginType::Builtin(ident) if ident == "Autoscale") {
            self.check_autoscale_max(&settings);
        }
        self.args.plugins.push(Plugin { ty, settings });
        Ok(())
    }

    /// `Autoscale(max = ..)` takes a count or `"auto"`: any other string is a mistake
    /// the compiler can see.
    fn check_autoscale_max(&mut self, settings: &[PluginSetting]) {
        for setting in settings.iter().filter(|setting| setting.key == "max") {
            if let SettingValue::Expr(value) = &setting.value {
                if let Some(Lit::Str(lit)) = literal(value) {
                    if lit.value() != "auto" {
                        self.errors.at(
                            lit.span(),
                            format_args!(
                                "expected a count of workers or \"auto\" (the CPUs), not {:?}",
                                lit.value()
                            ),
                        );
                    }
                }
            }
        }
    }

    /// Reads one `key = value` inside a plugin entry's parentheses; `keys` are the keys
    /// read before it in the same entry, `settings` the valid settings.
    fn plugin_setting(
        &mut self,
        setting: &ParseNestedMeta<'_>,
        keys: &mut Vec<Ident>,
        settings: &mut Vec<PluginSetting>,
    ) -> syn::Result<()> {
        let Some(key) = setting.path.get_ident().cloned() else {
            self.errors.spanned(
                &setting.path,
                "expected a setting name, like `max_deaths = 5`",
            );
            return skip_value(setting);
        };
        if !setting.input.peek(Token![=]) {
            self.errors
                .at(key.span(), format_args!("expected `{key} = <value>`"));
            return skip_value(setting);
        }
        let value: Expr = setting.value()?.parse()?;
        let repeated = keys.contains(&key);
        if repeated {
            self.errors
                .at(key.span(), format_args!("`{key}` set multiple times"));
        } else {
            keys.push(key.clone());
        }
        // Read even when repeated, so that a mistake in the value is reported too.
        let value = self.setting_value(value);
        match value {
            Some(value) if !repeated => settings.push(PluginSetting { key, value }),
            _ => {}
        }
        Ok(())
    }

    /// Reads a string literal that starts like a number (a digit, `-`, `+` or `.`) as a
    /// duration or a size, recording the mistake if it is neither; any other value is
    /// passed on as written.
    fn setting_value(&mut self, value: Expr) -> Option<SettingValue> {
        let Some(Lit::Str(lit)) = literal(&value) else {
            return Some(SettingValue::Expr(value));
        };
        match units::parse(&lit.value()) {
            None => Some(SettingValue::Expr(value)),
            Some(Ok(quantity)) => Some(SettingValue::Quantity(quantity, lit.span())),
            Some(Err(error)) => {
                self.errors.at(lit.span(), error);
                None
            }
        }
    }

    /// Checks the combinations of arguments, once all are read.
    fn finish(mut self) -> Args {
        let configured: Vec<String> = self
            .args
            .plugins
            .iter()
            .filter(|plugin| matches!(plugin.ty, PluginType::Builtin(_)))
            .map(|plugin| plugin.ty.name())
            .collect();
        let mut without = std::mem::take(&mut self.args.without);
        without.retain(|ident| {
            let clash = configured.iter().any(|name| ident == name);
            if clash {
                self.errors.spanned(
                    ident,
                    format_args!(
                        "`{ident}` is both configured in `plugins(...)` and turned off in \
                         `without(...)`; keep one"
                    ),
                );
            }
            !clash
        });
        self.args.without = without;
        if let Some(threads) = &self.args.worker_threads {
            let flavor = self.args.flavor.as_ref().map(|flavor| flavor.value);
            // A `flavor` with a mistake has been reported already; don't guess at it.
            let flavor_mistaken = flavor.is_none() && self.seen.contains(&Argument::Flavor);
            let message = match flavor {
                Some(Flavor::MultiThread) => None,
                Some(Flavor::CurrentThread) => Some(
                    "`worker_threads` requires `flavor = \"multi_thread\"`: \
                     the \"current_thread\" flavor runs each worker on one thread",
                ),
                None if flavor_mistaken => None,
                None => Some(
                    "`worker_threads` requires `flavor = \"multi_thread\"`: \
                     the default flavor, \"current_thread\", runs each worker on one thread",
                ),
            };
            if let Some(message) = message {
                self.errors.at(threads.key.span(), message);
                self.args.worker_threads = None;
            }
        }
        self.args
    }
}

impl PluginType {
    /// The path as written, to compare entries: `Respawn`, `my_mod::MyPlugin`.
    fn name(&self) -> String {
        match self {
            Self::Builtin(ident) => ident.to_string(),
            Self::User(path) => path_to_string(path),
        }
    }
}

/// Steps over whatever follows a name, `= <expression>` or `(...)`, so that reading can
/// go on with the next argument once a mistake has been recorded.
fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.value()?.parse::<Expr>()?;
    } else if meta.input.peek(token::Paren) {
        meta.input.parse::<Group>()?;
    }
    Ok(())
}

/// The literal an expression is, seeing through the invisible groups that `macro_rules!`
/// wraps around `$value:expr`.
fn literal(expr: &Expr) -> Option<&Lit> {
    match expr {
        Expr::Lit(expr) => Some(&expr.lit),
        Expr::Group(group) => literal(&group.expr),
        _ => None,
    }
}

/// `a::b::C`, as written (without the spaces `TokenStream::to_string` would add).
fn path_to_string(path: &Path) -> String {
    let segments: Vec<String> = path
        .segments
        .iter()
        .map(|segment| segment.ident.to_string())
        .collect();
    let leading = if path.leading_colon.is_some() {
        "::"
    } else {
        ""
    };
    format!("{leading}{}", segments.join("::"))
}

/// `a`, `a or b`, `a, b or c`.
fn alternatives(items: &[impl Display]) -> String {
    let mut text = String::new();
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            text.push_str(if index + 1 == items.len() {
                " or "
            } else {
                ", "
            });
        }
        text.push_str(&item.to_string());
    }
    text
}

// ---------------------------------------------------------------------------------------
// The function
// ---------------------------------------------------------------------------------------

/// The function under the attribute.
///
/// The body is kept as unparsed tokens: only the signature matters here, and rustc
/// reports anything wrong inside the body where it is.
pub(crate) struct MainFn {
    pub(crate) attrs: Vec<Attribute>,
    pub(crate) vis: Visibility,
    pub(crate) sig: Signature,
    /// `{ ... }`, as written.
    pub(crate) body: Group,
}

impl Parse for MainFn {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis = input.parse()?;
        let looks_like_fn = input.peek(Token![fn])
            || input.peek(Token![async])
            || input.peek(Token![const])
            || input.peek(Token![unsafe])
            || input.peek(Token![extern]);
        if !looks_like_fn {
            return Err(input.error(format_args!(
                "#[wix_cluster::main] goes on the program's {EXPECTED_FN}"
            )));
        }
        let sig = input.parse()?;
        if !input.peek(token::Brace) {
            return Err(input.error("expected the function's body, `{ ... }`"));
        }
        let body = input.parse()?;
        Ok(Self {
            attrs,
            vis,
            sig,
            body,
        })
    }
}

impl MainFn {
    /// Checks that the signature is `async fn main(<one argument>)`, recording each
    /// mistake. The argument's type and the return type are left to the type checker.
    pub(crate) fn check(&self, errors: &mut Errors) {
        let sig = &self.sig;
        if sig.asyncness.is_none() {
            errors.spanned(
                sig.fn_token,
                format_args!(
                    "the `async` keyword is missing: #[wix_cluster::main] goes on {EXPECTED_FN}"
                ),
            );
        }
        if sig.ident != "main" {
            errors.spanned(
                &sig.ident,
                format_args!(
                    "#[wix_cluster::main] goes on the program's {EXPECTED_FN}: \
                     rename `{}` to `main`",
                    sig.ident
                ),
            );
        }
        if !sig.generics.params.is_empty() {
            errors.spanned(&sig.generics, "`main` cannot be generic");
        }
        if let Some(where_clause) = &sig.generics.where_clause {
            errors.spanned(where_clause, "`main` cannot have a `where` clause");
        }
        for input in &sig.inputs {
            if let FnArg::Receiver(receiver) = input {
                errors.spanned(
                    receiver,
                    format_args!("`main` cannot take `self`; it takes the worker: {EXPECTED_FN}"),
                );
            }
        }
        let one_argument = format!("`main` takes exactly one argument, the worker: {EXPECTED_FN}");
        match sig.inputs.len() {
            0 => errors.at(sig.paren_token.span.join(), &one_argument),
            1 => {}
            _ => {
                let extra = sig.inputs.iter().skip(1);
                errors.spanned(quote!(#(#extra),*), one_argument);
            }
        }
        if let Some(variadic) = &sig.variadic {
            errors.spanned(variadic, "`main` cannot be variadic");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(tokens: TokenStream) -> (Args, Vec<String>) {
        let mut errors = Errors::default();
        let args = parse_args(tokens, &mut errors);
        (args, errors.messages())
    }

    fn check(item: TokenStream) -> Vec<String> {
        let mut errors = Errors::default();
        match syn::parse2::<MainFn>(item) {
            Ok(main) => main.check(&mut errors),
            Err(error) => errors.push(error),
        }
        errors.messages()
    }

    #[test]
    fn no_arguments_is_all_defaults() {
        let (args, errors) = parse(quote!());
        assert!(errors.is_empty(), "{errors:?}");
        assert!(args.workers.is_none());
        assert!(args.plugins.is_empty());
        assert!(args.single_process.is_none());
        assert!(args.flavor.is_none());
        assert!(args.worker_threads.is_none());
        assert!(args.management.is_none());
        assert!(args.management_page.is_none());
    }

    #[test]
    fn management_arguments_are_an_address_and_a_function() {
        let (args, errors) = parse(quote!(
            management = "127.0.0.1:0",
            management_page = pages::admin
        ));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            args.management.map(|m| m.value),
            Some("127.0.0.1:0".to_owned())
        );
        let page = args.management_page.map(|p| path_to_string(&p.value));
        assert_eq!(page.as_deref(), Some("pages::admin"));

        let (args, errors) = parse(quote!(management = "localhost", management_page = admin()));
        assert_eq!(
            errors,
            [
                "`management` \"localhost\" is not an address: expected an IP address and a \
                 port, like \"127.0.0.1:8084\" or \"0.0.0.0:0\"",
                "`management_page` takes the name of a function returning `axum::Router`, like \
                 `management_page = admin_pages`",
            ]
        );
        assert!(args.management.is_none() && args.management_page.is_none());
        let (_, errors) = parse(quote!(management = 8084));
        assert_eq!(
            errors,
            ["`management` takes a string, an address like `management = \"127.0.0.1:8084\"`"]
        );
    }

    #[test]
    fn every_argument_is_read() {
        let (args, errors) = parse(quote!(
            workers = 4,
            plugins(
                Respawn,
                Graceful(timeout = "5s", signal = 15),
                my_mod::MyPlugin
            ),
            single_process = "never",
            flavor = "multi_thread",
            worker_threads = 2,
        ));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(args.workers.map(|w| w.value), Some(Workers::Count(4)));
        assert_eq!(
            args.single_process.map(|s| s.value),
            Some(SingleProcess::Never)
        );
        assert_eq!(args.flavor.map(|f| f.value), Some(Flavor::MultiThread));
        assert_eq!(args.worker_threads.map(|t| t.value), Some(2));
        let plugins: Vec<_> = args
            .plugins
            .iter()
            .map(|plugin| {
                let builtin = matches!(plugin.ty, PluginType::Builtin(_));
                let keys: Vec<_> = plugin.settings.iter().map(|s| s.key.to_string()).collect();
                (plugin.ty.name(), builtin, keys)
            })
            .collect();
        assert_eq!(
            plugins,
            [
                ("Respawn".to_owned(), true, vec![]),
                (
                    "Graceful".to_owned(),
                    true,
                    vec!["timeout".to_owned(), "signal".to_owned()]
                ),
                ("my_mod::MyPlugin".to_owned(), false, vec![]),
            ]
        );
    }

    #[test]
    fn only_bare_builtin_names_are_builtins() {
        let (args, errors) = parse(quote!(plugins(
            Stall,
            Statsd,
            LifecycleLog,
            crate::Respawn,
            ::other::Graceful,
            Custom
        )));
        assert!(errors.is_empty(), "{errors:?}");
        let builtin: Vec<_> = args
            .plugins
            .iter()
            .map(|plugin| matches!(plugin.ty, PluginType::Builtin(_)))
            .collect();
        assert_eq!(builtin, [true, true, true, false, false, false]);
    }

    #[test]
    fn every_mistake_is_reported_and_the_valid_arguments_are_kept() {
        let (args, errors) = parse(quote!(
            threads = 4,
            workers = 0,
            plugins(Respawn, Respawn, Graceful(timeout = "1s", timeout = "2s")),
            single_process = "sometimes",
            flavor = multi_thread,
            workers = 3,
        ));
        assert_eq!(
            errors,
            [
                "unknown argument `threads`; expected `workers`, `plugins`, `without`, \
                 `single_process`, `flavor`, `worker_threads`, `management`, \
                 `management_page`, `watch`, `request_metrics`, `header_read_timeout`, \
                 `idle_timeout`, `body_read_timeout` or `max_header_bytes`",
                "`workers` must be at least 1",
                "plugin `Respawn` listed more than once",
                "`timeout` set multiple times",
                "unknown `single_process` \"sometimes\"; expected \"auto\", \"always\" or \"never\"",
                "`flavor` takes a string: \"current_thread\" or \"multi_thread\"",
                "`workers` set multiple times",
            ]
        );
        assert!(args.workers.is_none());
        assert_eq!(args.plugins.len(), 2);
        assert_eq!(args.plugins[1].settings.len(), 1);
    }

    #[test]
    fn max_header_bytes_is_a_size_or_bytes_from_8_kib_to_16_mib() {
        let (args, errors) = parse(quote!(max_header_bytes = "32KiB"));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(args.max_header_bytes.map(|s| s.value), Some(32768));
        let (args, errors) = parse(quote!(max_header_bytes = 65536));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(args.max_header_bytes.map(|s| s.value), Some(65536));
        for bad in [
            quote!("1KiB"),
            quote!("5s"),
            quote!(4096),
            quote!("32MiB"),
            quote!(big),
        ] {
            let (args, errors) = parse(quote!(max_header_bytes = #bad));
            assert!(args.max_header_bytes.is_none());
            assert_eq!(errors.len(), 1, "{bad}: {errors:?}");
            assert!(errors[0].contains("max_header_bytes"), "{errors:?}");
        }
    }

    #[test]
    fn counts_must_be_positive_integer_literals() {
        let (_, errors) = parse(quote!(workers = "4"));
        assert_eq!(
            errors,
            ["`workers` takes a number, not a string: write `workers = 4`"]
        );
        let (_, errors) = parse(quote!(workers = -1));
        assert_eq!(
            errors,
            ["`workers` takes an integer literal, like `workers = 4`"]
        );
        let (_, errors) = parse(quote!(workers = 99999999999999999999999));
        assert_eq!(errors.len(), 1);
        let (args, errors) = parse(quote!(workers = 16usize));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(args.workers.map(|w| w.value), Some(Workers::Count(16)));
    }

    #[test]
    fn string_settings_that_start_like_a_number_are_durations_or_sizes() {
        let (args, errors) = parse(quote!(plugins(Stall(
            timeout = "1.5s",
            max_rss = "512MiB",
            addr = "localhost:9090",
            name = "worker",
            grace = Duration::from_secs(5),
            count = 3
        ))));
        assert!(errors.is_empty(), "{errors:?}");
        let values: Vec<String> = args.plugins[0]
            .settings
            .iter()
            .map(|setting| match &setting.value {
                SettingValue::Quantity(quantity, _) => format!("{quantity:?}"),
                SettingValue::Expr(expr) => quote!(#expr).to_string(),
            })
            .collect();
        assert_eq!(
            values,
            [
                "Duration { nanos: 1500000000 }",
                "Size { bytes: 536870912 }",
                "\"localhost:9090\"",
                "\"worker\"",
                "Duration :: from_secs (5)",
                "3",
            ]
        );
    }

    #[test]
    fn string_settings_that_are_neither_a_duration_nor_a_size_are_reported() {
        let (args, errors) = parse(quote!(plugins(
            Respawn(within = "30x", max_deaths = 5),
            Graceful(timeout = "-5s", timeout = "5 parsecs")
        )));
        assert_eq!(
            errors,
            [
                "`\"30x\"` is not a duration (like \"30s\", \"1.5s\", \"1m 30s\") or a size \
                 (like \"512MiB\", \"1GB\")",
                "durations and sizes cannot be negative: `\"-5s\"`",
                "`timeout` set multiple times",
                "`\"5 parsecs\"` is not a duration (like \"30s\", \"1.5s\", \"1m 30s\") or a size \
                 (like \"512MiB\", \"1GB\")",
            ]
        );
        // The mistaken settings are left out; the rest is kept.
        let keys: Vec<Vec<String>> = args
            .plugins
            .iter()
            .map(|plugin| plugin.settings.iter().map(|s| s.key.to_string()).collect())
            .collect();
        assert_eq!(keys, [vec!["max_deaths".to_owned()], vec![]]);
    }

    #[test]
    fn worker_threads_requires_the_multi_thread_flavor() {
        let (args, errors) = parse(quote!(worker_threads = 2));
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("`worker_threads` requires `flavor = \"multi_thread\"`"));
        assert!(args.worker_threads.is_none());

        let (_, errors) = parse(quote!(flavor = "current_thread", worker_threads = 2));
        assert_eq!(errors.len(), 1);

        // A mistaken flavor is reported once, not again through `worker_threads`.
        let (_, errors) = parse(quote!(flavor = "multi", worker_threads = 2));
        assert_eq!(errors.len(), 1);
    }

    #[test]
    fn arguments_in_the_wrong_shape_are_reported() {
        let (_, errors) = parse(quote!(workers, flavor("multi_thread"), plugins = Respawn));
        assert_eq!(
            errors,
            [
                "expected `workers = ...`, like `workers = 4`",
                "expected `flavor = ...`, like `flavor = \"multi_thread\"`",
                "expected `plugins(...)`, like `plugins(Graceful, Respawn(max_deaths = 5))`",
            ]
        );
        let (_, errors) = parse(quote!(plugins(
            Respawn = 1,
            Graceful(timeout),
            Stall(a::b = 1)
        )));
        assert_eq!(
            errors,
            [
                "expected a plugin, `Respawn` or `Respawn(key = value, ...)`, not `Respawn = ...`",
                "expected `timeout = <value>`",
                "expected a setting name, like `max_deaths = 5`",
            ]
        );
    }

    #[test]
    fn a_syntax_error_keeps_what_was_read_before_it() {
        let (args, errors) = parse(quote!(workers = 2, flavor = "multi_thread" 3));
        assert_eq!(errors.len(), 1);
        assert_eq!(args.workers.map(|w| w.value), Some(Workers::Count(2)));
    }

    #[test]
    fn async_fn_main_with_one_argument_is_accepted() {
        let errors = check(quote!(
            /// Docs.
            #[allow(unused)]
            pub async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
                Ok(())
            }
        ));
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn every_mistake_in_the_signature_is_reported() {
        let errors = check(quote!(
            fn serve<T>(self, a: u8, b: u8)
            where
                T: Copy,
            {
            }
        ));
        assert_eq!(errors.len(), 6, "{errors:?}");
        assert!(errors[0].starts_with("the `async` keyword is missing"));
        assert!(errors[1].ends_with("rename `serve` to `main`"));
        assert_eq!(errors[2], "`main` cannot be generic");
        assert_eq!(errors[3], "`main` cannot have a `where` clause");
        assert!(errors[4].starts_with("`main` cannot take `self`"));
        assert!(errors[5].starts_with("`main` takes exactly one argument"));

        let errors = check(quote!(
            async fn main() {}
        ));
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("`main` takes exactly one argument"));
    }

    #[test]
    fn something_other_than_a_function_is_refused() {
        let errors = check(quote!(
            struct Main;
        ));
        assert_eq!(
            errors,
            [
                "#[wix_cluster::main] goes on the program's `async fn main(worker: wix_cluster::Worker)`"
            ]
        );
    }

    #[test]
    fn workers_auto_and_without_are_read() {
        let (args, errors) = parse(quote!(workers = "auto", without(Respawn, Stall)));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(args.workers.map(|w| w.value), Some(Workers::Auto));
        let names: Vec<String> = args.without.iter().map(ToString::to_string).collect();
        assert_eq!(names, ["Respawn", "Stall"]);
    }

    #[test]
    fn without_rejects_what_is_not_a_default_and_what_is_also_configured() {
        let (_, errors) = parse(quote!(without(Respwn, LifecycleLog)));
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].contains("`Respwn` is not a default plugin"),
            "{errors:?}"
        );
        let (args, errors) = parse(quote!(plugins(Respawn), without(Respawn)));
        assert!(errors[0].contains("both configured"), "{errors:?}");
        assert!(args.without.is_empty());
        let (_, errors) = parse(quote!(workers = "many"));
        assert!(errors[0].contains("\"auto\""), "{errors:?}");
    }
}
