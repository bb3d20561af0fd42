//! The routing part of an API spec: its context and version (its key in the
//! [`RouteTable`](super::RouteTable)) and each resource's pattern and methods, entered in the
//! API's [`ResourceTable`](super::ResourceTable). [`crate::compile()`] walks the APIs and
//! their resources and calls these.

use super::table::ParsedPattern;
use super::{normalize, MethodSet, ResourceTable};
use crate::config::{ApiSpec, ResourceSpec};
use crate::error::Errors;

/// An API's `context` (returned without a trailing `/`) and `version`, checked; errors under
/// `path` (the API's field path).
pub(crate) fn compile_api_route<'a>(spec: &'a ApiSpec, path: &str, errors: &mut Errors) -> &'a str {
    let context = spec.context.trim_end_matches('/');
    match normalize(context) {
        Ok(n) if n == context && context.len() > 1 && !context.contains(['%', '{', '}', '*']) => {}
        _ => errors.push(
            format!("{path}.context"),
            format!("`{}` must be an absolute path like /orders, without dot segments, escapes, templates or //", spec.context),
        ),
    }
    if spec.version.is_empty() || spec.version.contains(['/', '%', '?', '#']) {
        errors.push(format!("{path}.version"), format!("`{}` must be one non-empty path segment", spec.version));
    }
    context
}

/// A resource's `methods` (at `rpath`, the resource's field path). GET implies HEAD.
pub(crate) fn compile_methods(r: &ResourceSpec, rpath: &str, errors: &mut Errors) -> MethodSet {
    let mut methods = MethodSet::EMPTY;
    if r.methods.is_empty() {
        errors.push(format!("{rpath}.methods"), "list at least one verb, or ANY");
    }
    for (k, m) in r.methods.iter().enumerate() {
        match MethodSet::parse(m) {
            Some(s) => methods = methods.union(s),
            None => errors.push(format!("{rpath}.methods[{k}]"), format!("`{m}` is not an HTTP method (GET, POST, ... or ANY)")),
        }
    }
    // A resource that serves GET also serves HEAD, as HTTP expects (RFC 9110 §9.3.2).
    if methods.contains(MethodSet::parse("GET").unwrap_or_default()) {
        methods = methods.union(MethodSet::parse("HEAD").unwrap_or_default());
    }
    methods
}

/// A resource's pattern and methods (at `rpath`), entered in the API's resource table as
/// resource `index`. Returns the methods and the template's variable names; `None` when the
/// pattern is refused.
pub(crate) fn compile_resource_route(
    table: &mut ResourceTable,
    r: &ResourceSpec,
    index: u32,
    rpath: &str,
    errors: &mut Errors,
) -> Option<(MethodSet, Vec<String>)> {
    let methods = compile_methods(r, rpath, errors);
    match ParsedPattern::parse(&r.path) {
        Ok(p) => {
            if let Err(e) = table.insert(&p, methods, index) {
                errors.push(format!("{rpath}.path"), e);
            }
            Some((methods, p.vars))
        }
        Err(e) => {
            errors.push(format!("{rpath}.path"), format!("`{}`: {e}", r.path));
            None
        }
    }
}
