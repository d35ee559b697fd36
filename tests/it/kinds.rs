//! A resource kind defined outside paranix, as users can: small, with one field of each behaviour, so
//! planner and executor tests can build arbitrary graphs.

use paranix::address::Mode;
use paranix::attr::{Attr, Attrs};
use paranix::resource::{Handle, Lifecycle, Resource, Validator};
use paranix::schema::{Compare, Field, OutputField, Schema};
use paranix::value::{Output, Value};

static FIELDS: [Field; 5] = [
    Field::new("refs").compare(Compare::Set),
    Field::new("secret").sensitive(),
    Field::new("size").force_new(),
    Field::new("tags"),
    Field::new("value"),
];

static OUTPUTS: [OutputField; 2] = [OutputField::new("id"), OutputField::new("arn")];

/// The schema of [`Thing`].
pub(crate) static THING: Schema = Schema {
    kind: "test_thing",
    mode: Mode::Managed,
    fields: &FIELDS,
    outputs: &OUTPUTS,
    id: Some("id"),
    predict: paranix::schema::predict_nothing,
    open_outputs: false,
};

/// `value` updates in place, `size` forces replacement, `refs` is a set of references, `secret` is sensitive.
#[derive(Clone, Debug)]
pub(crate) struct Thing {
    name: String,
    value: Value<String>,
    size: i64,
    refs: Vec<Value<String>>,
    secret: Option<String>,
    lifecycle: Lifecycle,
}

impl Thing {
    pub(crate) fn new(name: &str) -> Self {
        Thing {
            name: name.to_owned(),
            value: Value::Known("v".into()),
            size: 1,
            refs: Vec::new(),
            secret: None,
            lifecycle: Lifecycle::default(),
        }
    }

    pub(crate) fn value(mut self, value: impl Into<Value<String>>) -> Self {
        self.value = value.into();
        self
    }

    pub(crate) fn size(mut self, size: i64) -> Self {
        self.size = size;
        self
    }

    pub(crate) fn uses(mut self, other: &Handle<Thing>) -> Self {
        self.refs.push(id(other).into());
        self
    }

    pub(crate) fn secret(mut self, secret: &str) -> Self {
        self.secret = Some(secret.to_owned());
        self
    }
}

/// A thing's id.
pub(crate) fn id(handle: &Handle<Thing>) -> Output<String> {
    handle.attribute("id")
}

impl Resource for Thing {
    fn schema() -> &'static Schema {
        &THING
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn inputs(&self) -> Attrs {
        Attrs::from([
            ("refs".into(), Attr::List(self.refs.iter().map(Value::to_attr).collect())),
            ("secret".into(), self.secret.clone().map_or(Attr::Null, Attr::Str)),
            ("size".into(), Attr::Int(self.size)),
            ("tags".into(), Attr::Map(Default::default())),
            ("value".into(), self.value.to_attr()),
        ])
    }

    fn validate(&self, v: &mut Validator<'_>) {
        if self.size < 0 {
            v.error("size", format!("{} is negative", self.size));
        }
    }

    fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    fn lifecycle_mut(&mut self) -> &mut Lifecycle {
        &mut self.lifecycle
    }
}
