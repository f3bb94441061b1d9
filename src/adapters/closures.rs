//! Nodes made of closures: [`Registry::map`], [`Registry::filter`], [`Registry::flat_map`] and
//! [`Registry::for_each`], for steps that keep no state across records. Each worker gets its
//! own clone of the closure; a step with state, settings or outputs of its own is a [`Node`].

use std::marker::PhantomData;

use crate::graph::{
    Emitter, Message, Node, NodeError, NodeFactory, Nothing, RecordContext, Registry,
};

/// A node emitting `f(input)` for every input.
pub struct Map<A, B, F> {
    f: F,
    _types: PhantomData<fn(&A) -> B>,
}

impl<A, B, F> Node for Map<A, B, F>
where
    A: Message,
    B: Message,
    F: FnMut(&A) -> B + Send + 'static,
{
    type Input = A;
    type Output = B;

    #[inline]
    fn process(
        &mut self,
        input: &A,
        _ctx: &RecordContext<'_>,
        out: &mut Emitter<'_, B>,
    ) -> Result<(), NodeError> {
        out.emit(&(self.f)(input))
    }
}

/// A node passing on the inputs for which `f` is true (the others end here).
pub struct Filter<A, F> {
    f: F,
    _types: PhantomData<fn(&A)>,
}

impl<A, F> Node for Filter<A, F>
where
    A: Message,
    F: FnMut(&A) -> bool + Send + 'static,
{
    type Input = A;
    type Output = A;

    #[inline]
    fn process(
        &mut self,
        input: &A,
        _ctx: &RecordContext<'_>,
        out: &mut Emitter<'_, A>,
    ) -> Result<(), NodeError> {
        if (self.f)(input) {
            out.emit(input)?;
        }
        Ok(())
    }
}

/// The types a [`FlatMap`] maps between: input, item, and the collection of items.
type FlatTypes<A, B, I> = PhantomData<fn(&A) -> (B, I)>;

/// A node emitting every item of `f(input)` (none, one or many per input).
pub struct FlatMap<A, B, I, F> {
    f: F,
    _types: FlatTypes<A, B, I>,
}

impl<A, B, I, F> Node for FlatMap<A, B, I, F>
where
    A: Message,
    B: Message,
    I: IntoIterator<Item = B> + 'static,
    F: FnMut(&A) -> I + Send + 'static,
{
    type Input = A;
    type Output = B;

    fn process(
        &mut self,
        input: &A,
        _ctx: &RecordContext<'_>,
        out: &mut Emitter<'_, B>,
    ) -> Result<(), NodeError> {
        for item in (self.f)(input) {
            out.emit(&item)?;
        }
        Ok(())
    }
}

/// A sink calling `f` on every input (with its context: `seq`, group).
pub struct ForEach<A, F> {
    f: F,
    _types: PhantomData<fn(&A)>,
}

impl<A, F> Node for ForEach<A, F>
where
    A: Message,
    F: FnMut(&A, &RecordContext<'_>) -> Result<(), NodeError> + Send + 'static,
{
    type Input = A;
    type Output = Nothing;

    fn process(
        &mut self,
        input: &A,
        ctx: &RecordContext<'_>,
        _out: &mut Emitter<'_, Nothing>,
    ) -> Result<(), NodeError> {
        (self.f)(input, ctx)
    }
}

impl Registry {
    /// Registers a node named `name` that emits `f(input)` for every input.
    ///
    /// ```
    /// use stream_kernel::adapters::Line;
    /// let mut registry = stream_kernel::graph::Registry::new();
    /// registry.map("upper", |line: &Line| Line::new(line.bytes.to_ascii_uppercase()));
    /// ```
    pub fn map<A, B, F>(&mut self, name: &str, f: F) -> &mut NodeFactory
    where
        A: Message,
        B: Message,
        F: Fn(&A) -> B + Clone + Send + Sync + 'static,
    {
        self.transform(name, move |_| {
            Ok(Map {
                f: f.clone(),
                _types: PhantomData,
            })
        })
    }

    /// Registers a node named `name` that passes on the inputs for which `f` is true.
    ///
    /// ```
    /// use stream_kernel::adapters::Line;
    /// let mut registry = stream_kernel::graph::Registry::new();
    /// registry.filter("non_empty", |line: &Line| !line.bytes.is_empty());
    /// ```
    pub fn filter<A, F>(&mut self, name: &str, f: F) -> &mut NodeFactory
    where
        A: Message,
        F: Fn(&A) -> bool + Clone + Send + Sync + 'static,
    {
        self.transform(name, move |_| {
            Ok(Filter {
                f: f.clone(),
                _types: PhantomData,
            })
        })
    }

    /// Registers a node named `name` that emits every item `f` returns for an input.
    ///
    /// ```
    /// use stream_kernel::adapters::Line;
    /// let mut registry = stream_kernel::graph::Registry::new();
    /// registry.flat_map("words", |line: &Line| {
    ///     line.text().split_whitespace().map(Line::new).collect::<Vec<_>>()
    /// });
    /// ```
    pub fn flat_map<A, B, I, F>(&mut self, name: &str, f: F) -> &mut NodeFactory
    where
        A: Message,
        B: Message,
        I: IntoIterator<Item = B> + 'static,
        F: Fn(&A) -> I + Clone + Send + Sync + 'static,
    {
        self.transform(name, move |_| {
            Ok(FlatMap {
                f: f.clone(),
                _types: PhantomData,
            })
        })
    }

    /// Registers a sink named `name` that calls `f` on every input (for side effects; a sink
    /// that writes a run's output file is [`Registry::line_sink`]).
    ///
    /// ```
    /// use stream_kernel::adapters::Line;
    /// let mut registry = stream_kernel::graph::Registry::new();
    /// registry.for_each("count", |_line: &Line, _ctx| Ok(()));
    /// ```
    pub fn for_each<A, F>(&mut self, name: &str, f: F) -> &mut NodeFactory
    where
        A: Message,
        F: Fn(&A, &RecordContext<'_>) -> Result<(), NodeError> + Clone + Send + Sync + 'static,
    {
        self.transform(name, move |_| {
            Ok(ForEach {
                f: f.clone(),
                _types: PhantomData,
            })
        })
    }
}
