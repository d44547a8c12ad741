//! The column-constraint checker: walks a query's logical plan, computes the lineage of every
//! column, and rejects any use of a value that its source columns' constraints forbid.
//!
//! It judges values where they are used, not where they are named: a `group_by_only` column may
//! pass through a CTE's `SELECT *` as long as what reaches the result is a group key. The uses are
//! the result itself (and a subquery's result), predicates (WHERE, HAVING, JOIN ON, FILTER), GROUP
//! BY and DISTINCT, aggregate arguments, window functions, ORDER BY, LIMIT and UNNEST.
//!
//! Identifiers (`pseudonymized` columns) may be used anywhere, except where they single one
//! person out of a statistic: reduced together with raw `aggregate_only` values, in an
//! aggregate's arguments or its FILTER; aggregated other than counted, or named in a FILTER, in a
//! grouping by raw `group_by_only` values; or in a grouping key in any form but the bare
//! identifier (and not even bare next to raw `group_by_only` keys).
//!
//! A `compare_only` or `aggregate_only` column may also be used through `classify`, at a grain
//! or edges the catalog publishes for it (`Flow::Classified`): as a grouping key (a restricted
//! grouping, like raw `group_by_only` keys) and in predicates, and like any value once grouped.
//!
//! Values may not grow without bound: a value is weighed by how many stored values or constants
//! it is assembled from, counting an argument a function repeats once per repetition; an
//! argument repeated as many times as the data decides (a delimiter, a replacement) must be a
//! literal.
//!
//! Three things it must never do: accept a plan node it does not understand (it rejects the
//! unknown), let a subquery's result lose the lineage of the outer columns it was correlated on,
//! or let a `compare_only` value be compared across rows of different relations (the rows that
//! match would reveal it).

use std::borrow::Cow;
use std::collections::BTreeSet;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, JoinType, ScalarValue};
use datafusion::logical_expr::utils::{grouping_set_to_exprlist, split_conjunction};
use datafusion::logical_expr::{Distinct, Expr, ExprSchemable, LogicalPlan, Subquery, Volatility};

use datafusion::logical_expr::expr::ScalarFunction;
use sandbox_catalog::{Classification, Constraint};

use crate::classify::{self, Cut};
use crate::lineage::{Flow, Item, Lineage, Origin, OutputColumn, Source};
use crate::rejection::{Classes, Place, Reason, Rejection, RestrictedKeys};
use crate::views::Views;

/// Aggregates that reduce many values to one summary: the only ones an `aggregate_only` column may
/// feed. `min`, `max` and the quantiles return one row's value; the output audit requires enough
/// privacy units behind them. Collecting aggregates (`array_agg`, `string_agg`, `first_value` ...)
/// return raw values and are not here.
const REDUCING_AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "median",
    "stddev",
    "stddev_pop",
    "var",
    "var_pop",
    "corr",
    "covar_samp",
    "covar_pop",
    "regr_slope",
    "regr_intercept",
    "regr_count",
    "regr_r2",
    "regr_avgx",
    "regr_avgy",
    "regr_sxx",
    "regr_syy",
    "regr_sxy",
    "approx_distinct",
    "approx_median",
    "approx_percentile_cont",
    "approx_percentile_cont_with_weight",
    "percentile_cont",
    "bool_and",
    "bool_or",
];

/// Functions whose output can be far larger than their input (`repeat(s, 2000000)`): memory a
/// scalar function allocates is outside the query's memory pool, so one call could exhaust the
/// process. What remains is bounded by the SQL text's size times the batch size.
const AMPLIFYING_FUNCTIONS: &[&str] = &[
    "repeat",
    "lpad",
    "rpad",
    "replace",
    "regexp_replace",
    "array_repeat",
    "array_resize",
    "range",
    "generate_series",
];

/// Column names the sandbox keeps for itself.
pub(crate) const RESERVED: &str = "__sandbox_";

/// Checks `plan` and returns the lineage of each output column.
pub(crate) fn check(views: &Views, plan: &LogicalPlan) -> Result<Vec<OutputColumn>, Rejection> {
    let mut checker = Checker { views, origins: 0, within: Vec::new(), grouping_restricted: None };
    let lineage = checker.plan(plan, None)?;
    for l in &lineage {
        checker.consume(l, &Place::Output)?;
    }
    let fields = plan.schema().fields();
    Ok(fields.iter().zip(&lineage).map(|(f, l)| OutputColumn::new(f.name(), l)).collect())
}

struct Checker<'v> {
    views: &'v Views,
    origins: usize,
    /// Names of the subqueries being walked, for messages.
    within: Vec<String>,
    /// Whether the aggregates being walked are those of a restricted grouping: by raw
    /// `group_by_only` values or by a classification of a restricted column.
    grouping_restricted: Option<RestrictedKeys>,
}

/// The columns an expression can name: one or more input relations, then enclosing queries.
#[derive(Clone, Copy)]
struct Scope<'a> {
    parts: &'a [(&'a DFSchema, &'a [Lineage])],
    outer: Option<&'a Scope<'a>>,
}

impl<'a> Scope<'a> {
    /// The columns of the input relations as one schema, to compute the types of expressions.
    fn schema(&self) -> Cow<'a, DFSchema> {
        match self.parts {
            [] => Cow::Owned(DFSchema::empty()),
            [(schema, _)] => Cow::Borrowed(*schema),
            [(first, _), rest @ ..] => {
                let mut schema = (*first).clone();
                for (other, _) in rest {
                    schema.merge(other);
                }
                Cow::Owned(schema)
            }
        }
    }

    fn resolve(&self, c: &Column) -> Option<&'a Lineage> {
        self.parts.iter().find_map(|(schema, lineage)| schema.maybe_index_of_column(c).and_then(|i| lineage.get(i)))
    }

    fn resolve_outer(&self, c: &Column) -> Option<&'a Lineage> {
        let mut scope = self.outer;
        while let Some(s) = scope {
            if let Some(l) = s.resolve(c) {
                return Some(l);
            }
            scope = s.outer;
        }
        None
    }
}

impl Checker<'_> {
    fn fresh(&mut self) -> Origin {
        self.origins += 1;
        Origin(self.origins)
    }

    fn reject(&self, reason: Reason) -> Rejection {
        Rejection { reason, within: self.within.clone() }
    }

    /// The lineage of each output column of `plan`, checking every use of a value on the way.
    /// Grows the stack as it recurses: a long chain of `a + b + c ...` is a deep tree.
    #[recursive::recursive]
    fn plan(&mut self, plan: &LogicalPlan, outer: Option<&Scope<'_>>) -> Result<Vec<Lineage>, Rejection> {
        // The threshold rewrite names its hidden columns so; a query must not.
        if plan.schema().fields().iter().any(|f| f.name().starts_with(RESERVED)) {
            return Err(self.reject(Reason::Unsupported("names starting with __sandbox_, which are reserved")));
        }
        match plan {
            LogicalPlan::TableScan(scan) => {
                let Some(view) = self.views.find(&scan.source) else {
                    return Err(self.reject(Reason::NotAView(scan.table_name.to_string())));
                };
                if !scan.filters.is_empty() {
                    return Err(self.reject(Reason::Unsupported("table scans with pushed-down filters")));
                }
                let origin = self.fresh();
                let lineage = scan
                    .projected_schema
                    .fields()
                    .iter()
                    .map(|f| Lineage::column(&view.name, f.name(), view.constraint(f.name()), origin))
                    .collect();
                Ok(lineage)
            }
            LogicalPlan::Projection(p) => {
                let input = self.plan(&p.input, outer)?;
                let parts = [(p.input.schema().as_ref(), input.as_slice())];
                let scope = Scope { parts: &parts, outer };
                p.expr.iter().map(|e| self.expr(e, &scope)).collect()
            }
            LogicalPlan::Filter(f) => {
                let input = self.plan(&f.input, outer)?;
                let parts = [(f.input.schema().as_ref(), input.as_slice())];
                let scope = Scope { parts: &parts, outer };
                let place = match f.input.as_ref() {
                    LogicalPlan::Aggregate(_) => Place::Having,
                    _ => Place::Where,
                };
                self.predicate(&f.predicate, &scope, &place)?;
                Ok(input)
            }
            LogicalPlan::Aggregate(a) => {
                let input = self.plan(&a.input, outer)?;
                let parts = [(a.input.schema().as_ref(), input.as_slice())];
                let scope = Scope { parts: &parts, outer };
                let origin = self.fresh();
                let mut out = Vec::new();
                let groups = grouping_set_to_exprlist(&a.group_expr).map_err(|_| self.internal("grouping sets"))?;
                let mut keys = Vec::new();
                for g in groups {
                    let l = self.expr(g, &scope)?;
                    self.consume(&l, &Place::GroupBy)?;
                    keys.push(l);
                }
                let restricted = self.keys(&keys, &Place::GroupBy)?;
                out.extend(keys.into_iter().map(|l| l.became(Flow::GroupKey, origin)));
                if matches!(a.group_expr.as_slice(), [Expr::GroupingSet(_)]) {
                    out.push(Lineage::default()); // the internal grouping id
                }
                // (A rejection ends the whole check, so the flag needs restoring only on success.)
                let enclosing = std::mem::replace(&mut self.grouping_restricted, restricted);
                for e in &a.aggr_expr {
                    out.push(self.expr(e, &scope)?.became(Flow::Aggregated, origin));
                }
                self.grouping_restricted = enclosing;
                Ok(out.into_iter().map(|l| with_rows(l, origin)).collect())
            }
            LogicalPlan::Window(w) => {
                let input = self.plan(&w.input, outer)?;
                let parts = [(w.input.schema().as_ref(), input.as_slice())];
                let scope = Scope { parts: &parts, outer };
                let origin = self.fresh();
                let mut out = input.clone();
                for e in &w.window_expr {
                    out.push(with_rows(self.expr(e, &scope)?, origin));
                }
                Ok(out)
            }
            LogicalPlan::Sort(s) => {
                let input = self.plan(&s.input, outer)?;
                let parts = [(s.input.schema().as_ref(), input.as_slice())];
                let scope = Scope { parts: &parts, outer };
                for e in &s.expr {
                    let l = self.expr(&e.expr, &scope)?;
                    self.consume(&l, &Place::OrderBy)?;
                }
                Ok(input)
            }
            LogicalPlan::Limit(l) => {
                let input = self.plan(&l.input, outer)?;
                let scope = Scope { parts: &[], outer };
                for e in l.skip.iter().chain(&l.fetch) {
                    let lineage = self.expr(e, &scope)?;
                    self.consume(&lineage, &Place::Limit)?;
                }
                Ok(input)
            }
            LogicalPlan::Join(j) => {
                let left = self.plan(&j.left, outer)?;
                let right = self.plan(&j.right, outer)?;
                let parts =
                    [(j.left.schema().as_ref(), left.as_slice()), (j.right.schema().as_ref(), right.as_slice())];
                let scope = Scope { parts: &parts, outer };
                let mut condition = Lineage::default();
                for (l, r) in &j.on {
                    condition.extend(self.predicate(&l.clone().eq(r.clone()), &scope, &Place::JoinOn)?);
                }
                if let Some(filter) = &j.filter {
                    condition.extend(self.predicate(filter, &scope, &Place::JoinOn)?);
                }
                Ok(match j.join_type {
                    JoinType::Inner | JoinType::Left | JoinType::Right | JoinType::Full => {
                        left.into_iter().chain(right).collect()
                    }
                    JoinType::LeftSemi | JoinType::LeftAnti => left,
                    JoinType::RightSemi | JoinType::RightAnti => right,
                    // The mark column says whether the row matched: it carries the condition.
                    JoinType::LeftMark => left.into_iter().chain([condition]).collect(),
                    JoinType::RightMark => right.into_iter().chain([condition]).collect(),
                })
            }
            LogicalPlan::Union(u) => {
                // A union's rows are rows of a new relation. A branch whose rows combine several
                // relations (a join) keeps their origins, so the union cannot hide that two of
                // its columns came from different rows.
                let origin = self.fresh();
                let mut out = vec![Lineage::rows(origin); u.schema.fields().len()];
                for input in &u.inputs {
                    let branch = self.plan(input, outer)?;
                    let origins: BTreeSet<Origin> = branch
                        .iter()
                        .flat_map(|l| &l.items)
                        .map(|i| i.origin)
                        .filter(|&o| o != Origin::CONSTANT)
                        .collect();
                    for (o, l) in out.iter_mut().zip(branch) {
                        o.extend(if origins.len() <= 1 { l.at(origin) } else { l });
                    }
                }
                Ok(out)
            }
            LogicalPlan::Distinct(Distinct::All(input)) => {
                let lineage = self.plan(input, outer)?;
                let origin = self.fresh();
                for l in &lineage {
                    self.consume(l, &Place::Distinct)?;
                }
                self.keys(&lineage, &Place::Distinct)?;
                Ok(lineage.into_iter().map(|l| with_rows(l.became(Flow::GroupKey, origin), origin)).collect())
            }
            LogicalPlan::Distinct(Distinct::On(d)) => {
                let input = self.plan(&d.input, outer)?;
                let parts = [(d.input.schema().as_ref(), input.as_slice())];
                let scope = Scope { parts: &parts, outer };
                let mut keys = Vec::new();
                for e in &d.on_expr {
                    let l = self.expr(e, &scope)?;
                    self.consume(&l, &Place::DistinctOn)?;
                    keys.push(l);
                }
                self.keys(&keys, &Place::DistinctOn)?;
                // DISTINCT ON must sort by its keys first; sorting by a key is grouping by it.
                for e in d.sort_expr.iter().flatten().filter(|e| !d.on_expr.contains(&e.expr)) {
                    let l = self.expr(&e.expr, &scope)?;
                    self.consume(&l, &Place::OrderBy)?;
                }
                let origin = self.fresh();
                let mut out = Vec::new();
                for e in &d.select_expr {
                    let l = self.expr(e, &scope)?;
                    // Selecting a DISTINCT ON key selects the group's key.
                    let key = d.on_expr.iter().any(|k| k == e || matches!(e, Expr::Alias(a) if *a.expr == *k));
                    out.push(if key { l.became(Flow::GroupKey, origin) } else { l });
                }
                Ok(out)
            }
            LogicalPlan::SubqueryAlias(a) => {
                self.within.push(format!("`{}`", a.alias));
                let lineage = self.plan(&a.input, outer)?;
                self.within.pop();
                Ok(lineage)
            }
            // A subquery as a relation is correlated only in a LATERAL join, on a sibling relation
            // that no enclosing scope holds: refuse rather than resolve its references wrongly.
            LogicalPlan::Subquery(s) if !s.outer_ref_columns.is_empty() => {
                Err(self.reject(Reason::Unsupported("LATERAL subqueries (correlated on a sibling relation)")))
            }
            LogicalPlan::Subquery(s) => self.plan(&s.subquery, outer),
            LogicalPlan::Values(v) => {
                let origin = self.fresh();
                let scope = Scope { parts: &[], outer };
                let mut out = vec![Lineage::rows(origin); v.schema.fields().len()];
                for row in &v.values {
                    for (o, e) in out.iter_mut().zip(row) {
                        o.extend(self.expr(e, &scope)?);
                    }
                }
                Ok(out)
            }
            LogicalPlan::EmptyRelation(e) => Ok(vec![Lineage::default(); e.schema.fields().len()]),
            LogicalPlan::Unnest(u) => {
                // How many rows an unnested list makes depends on its values: unnesting uses them.
                let input = self.plan(&u.input, outer)?;
                let unnested: BTreeSet<usize> =
                    u.list_type_columns.iter().map(|(i, _)| *i).chain(u.struct_type_columns.iter().copied()).collect();
                for &i in &unnested {
                    self.consume(input.get(i).ok_or_else(|| self.internal("an unnest column"))?, &Place::Unnest)?;
                }
                let origin = self.fresh();
                let out = u.dependency_indices.iter().map(|&i| {
                    let l = input.get(i).cloned().unwrap_or_default();
                    if unnested.contains(&i) { with_rows(l, origin) } else { l }
                });
                Ok(out.collect())
            }
            LogicalPlan::RecursiveQuery(_) => {
                Err(self.reject(Reason::Unsupported("recursive queries (WITH RECURSIVE)")))
            }
            LogicalPlan::Repartition(_) => Err(self.reject(Reason::Unsupported("repartitioning (DISTRIBUTE BY)"))),
            LogicalPlan::Extension(e) => Err(self.reject(Reason::NotAQuery(e.node.name().to_owned()))),
            LogicalPlan::Statement(_)
            | LogicalPlan::Explain(_)
            | LogicalPlan::Analyze(_)
            | LogicalPlan::Dml(_)
            | LogicalPlan::Ddl(_)
            | LogicalPlan::Copy(_)
            | LogicalPlan::DescribeTable(_) => Err(self.reject(Reason::NotAQuery(plan.display().to_string()))),
        }
    }

    /// The lineage of an expression's value, checking the uses inside it (aggregate and window
    /// arguments, subqueries). Only a column reference or an alias passes a value on unchanged;
    /// every other expression computes a new value from its sources.
    #[recursive::recursive]
    fn expr(&mut self, e: &Expr, scope: &Scope<'_>) -> Result<Lineage, Rejection> {
        let lineage = self.value(e, scope)?;
        Ok(match e {
            Expr::Column(_) | Expr::OuterReferenceColumn(..) | Expr::Alias(_) => lineage,
            _ => lineage.computed(),
        })
    }

    /// The lineage of `e`, before `expr` marks whether it passes a value on unchanged.
    fn value(&mut self, e: &Expr, scope: &Scope<'_>) -> Result<Lineage, Rejection> {
        match e {
            Expr::Alias(a) => self.expr(&a.expr, scope),
            Expr::Column(c) => scope.resolve(c).cloned().ok_or_else(|| self.internal("an unresolved column")),
            Expr::OuterReferenceColumn(_, c) => scope.resolve_outer(c).cloned().ok_or_else(|| {
                self.reject(Reason::Unsupported(
                    "a correlated subquery that refers to a sibling relation (LATERAL joins)",
                ))
            }),
            Expr::Literal(..) => Ok(Lineage::constant()),
            Expr::Placeholder(_) => Err(self.reject(Reason::Unsupported("parameter placeholders ($1)"))),
            Expr::ScalarVariable(..) => Err(self.reject(Reason::Unsupported("session variables (@name)"))),
            #[allow(deprecated)] // The planner expands wildcards; one left over would hide columns.
            Expr::Wildcard { .. } => Err(self.internal("an unexpanded wildcard")),
            Expr::GroupingSet(_) => Err(self.internal("a grouping set outside GROUP BY")),
            // A lambda runs once per element of a list: whatever it captures is repeated as many
            // times as the data decides, and its parameters carry no lineage.
            Expr::HigherOrderFunction(_) | Expr::Lambda(_) | Expr::LambdaVariable(_) => {
                Err(self.reject(Reason::Unsupported("higher-order functions (lambdas)")))
            }
            Expr::ScalarFunction(f) if classify::is_classify(f) => {
                self.deterministic(f.func.signature().volatility, f.func.name())?;
                self.classify(f, scope)
            }
            Expr::ScalarFunction(f) => {
                self.deterministic(f.func.signature().volatility, f.func.name())?;
                if AMPLIFYING_FUNCTIONS.contains(&f.func.name()) {
                    return Err(self.reject(Reason::Amplifying(f.func.name().to_owned())));
                }
                self.children(e, scope)
            }
            Expr::AggregateFunction(a) => {
                let name = a.func.name().to_owned();
                self.deterministic(a.func.signature().volatility, &name)?;
                // grouping() takes GROUP BY keys and says which ones a row is grouped by.
                let place = if name == "grouping" { Place::GroupBy } else { Place::Aggregate(name.clone()) };
                let mut out = Lineage::default();
                for arg in a.params.args.iter().chain(a.params.order_by.iter().map(|s| &s.expr)) {
                    let l = self.expr(arg, scope)?;
                    self.consume(&l, &place)?;
                    out.extend(l);
                }
                // string_agg puts its delimiter between every two rows it collects.
                if let ("string_agg", Some(delimiter)) = (name.as_str(), a.params.args.get(1)) {
                    self.repeated(delimiter, &name, "delimiter")?;
                }
                let filter = match &a.params.filter {
                    Some(filter) => Some(self.predicate(filter, scope, &Place::AggregateFilter(name.clone()))?),
                    None => None,
                };
                self.unidentified(&out, filter.as_ref(), &name)?;
                if let Some(keys) = self.grouping_restricted {
                    self.no_members(a, &out, filter.as_ref(), &name, keys)?;
                }
                // An aggregate's value is held by its accumulator, inside the memory pool.
                out.weight = 1;
                Ok(out.became(Flow::Aggregated, Origin::CONSTANT))
            }
            // PARTITION BY is not judged as a grouping key: a window sees no raw group_by_only or
            // aggregate_only value (they are refused here), so a partition computed from an
            // identifier isolates nothing the threshold protects; and the window's result carries
            // the identifier's lineage, so a grouping by it further up is judged there.
            Expr::WindowFunction(w) => {
                let name = w.fun.name().to_owned();
                let place = Place::Window(name.clone());
                let p = &w.params;
                let mut out = Lineage::default();
                let order = p.order_by.iter().map(|s| &s.expr);
                for arg in p.args.iter().chain(&p.partition_by).chain(order) {
                    let l = self.expr(arg, scope)?;
                    self.consume(&l, &place)?;
                    out.extend(l);
                }
                if let Some(filter) = &p.filter {
                    self.predicate(filter, scope, &Place::WindowFilter(name))?;
                }
                Ok(out)
            }
            Expr::ScalarSubquery(s) => {
                let mut out = self.subquery(s, scope, true)?;
                out.extend(self.correlation(s, scope)?);
                Ok(out)
            }
            Expr::Exists(x) => {
                // Only whether rows exist comes out: that depends on the outer values it is
                // correlated on, whose use inside was checked.
                self.subquery(&x.subquery, scope, false)?;
                self.correlation(&x.subquery, scope)
            }
            Expr::InSubquery(i) => {
                let mut out = self.expr(&i.expr, scope)?;
                out.extend(self.subquery(&i.subquery, scope, true)?);
                out.extend(self.correlation(&i.subquery, scope)?);
                Ok(out)
            }
            Expr::SetComparison(s) => {
                let mut out = self.expr(&s.expr, scope)?;
                out.extend(self.subquery(&s.subquery, scope, true)?);
                out.extend(self.correlation(&s.subquery, scope)?);
                Ok(out)
            }
            // Every other expression computes its value row by row from its children.
            _ => self.children(e, scope),
        }
    }

    /// `classify(x, grain)` or `classify(x, edges...)`: the period or band of each of `x`'s
    /// view columns, judged against the catalog's published classification.
    ///
    /// `x` must pass a view column's stored values on unchanged: a classification is published
    /// for those values, and `classify(registered_capital * 2, 100)` cuts the column at 50, which
    /// is not a published edge. A value already grouped or aggregated is a released statistic
    /// and may be cut anywhere. The grain and edges must be literals, to be judged here before
    /// anything runs. A `plaintext` or `group_by_only` column may be cut anywhere (grouping by a
    /// band of it is grouping by it); a `compare_only` or `aggregate_only` one only where its
    /// classification is published; a `pseudonymized` or `forbidden` one nowhere.
    fn classify(&mut self, f: &ScalarFunction, scope: &Scope<'_>) -> Result<Lineage, Rejection> {
        let Some((value, cut)) = f.args.split_first() else { return Err(self.internal("classify without arguments")) };
        let mut literals = Vec::with_capacity(cut.len());
        for c in cut {
            let Expr::Literal(literal, _) = c else { return Err(self.reject(Reason::ClassifyNotLiteral)) };
            literals.push(literal);
        }
        // The function refused a malformed grain or edges when the query was planned.
        let cut = Cut::parse(&literals).map_err(|_| self.internal("a classify call its function refuses"))?;
        let lineage = self.expr(value, scope)?;
        let mut out = Lineage::constant();
        for item in lineage.items {
            let Source::Column { view, column, constraint } = &item.source else {
                out.items.insert(item);
                continue;
            };
            match item.flow {
                Flow::GroupKey | Flow::Aggregated => {
                    out.items.insert(item);
                    continue;
                }
                Flow::Value if item.exact => {}
                Flow::Value | Flow::Classified => return Err(self.reject(Reason::ClassifyExpression)),
            }
            match constraint {
                Constraint::Plaintext | Constraint::GroupByOnly => {}
                Constraint::Pseudonymized | Constraint::Forbidden => {
                    let reason =
                        Reason::Unclassifiable { view: view.clone(), column: column.clone(), constraint: *constraint };
                    return Err(self.reject(reason));
                }
                Constraint::CompareOnly | Constraint::AggregateOnly => {
                    let published = self.views.classification(view, column);
                    if let Some(asked) = unpublished(&cut, published) {
                        let reason = Reason::Unpublished {
                            column: format!("{view}.{column}"),
                            constraint: *constraint,
                            asked,
                            published: published.map(classes),
                        };
                        return Err(self.reject(reason));
                    }
                }
            }
            out.items.insert(Item { flow: Flow::Classified, exact: false, ..item });
        }
        Ok(out)
    }

    fn children(&mut self, e: &Expr, scope: &Scope<'_>) -> Result<Lineage, Rejection> {
        self.no_list_as_text(e, scope)?;
        let mut children = Vec::new();
        e.apply_children(|c| {
            children.push(c);
            Ok(TreeNodeRecursion::Continue)
        })
        .map_err(|_| self.internal("an expression"))?;
        let mut parts = Vec::with_capacity(children.len());
        for c in children {
            parts.push(self.expr(c, scope)?);
        }
        let weight = self.weight(e, &parts)?;
        if weight > MAX_VALUE_WEIGHT {
            return Err(self.reject(Reason::TooLarge { parts: weight, limit: MAX_VALUE_WEIGHT }));
        }
        let mut out = Lineage::default();
        for l in parts {
            out.extend(l);
        }
        out.weight = weight;
        Ok(out)
    }

    /// How many stored values or constants the value of `e` is assembled from, given its
    /// children's `parts`: their sum for a concatenation, the largest otherwise, and, for a
    /// function that repeats an argument, that argument once per repetition.
    ///
    /// `concat_ws` repeats its separator between every two values: it weighs the separator once
    /// per gap. `array_to_string` (`array_join`, `list_to_string` ...) repeats its delimiter, and
    /// its null string, once per element, and `array_replace_all` / `array_replace_n` their
    /// replacement once per match: how many times, the data decides. Such an argument must be a
    /// literal, and weighs its length in bytes once per part of the list: a list of one-character
    /// elements joined by a 100-byte delimiter is 101 times its size (and `string_to_array(s,
    /// NULL)` makes a list of the characters of any string). Some functions grow text by a bounded
    /// factor, which nesting compounds: `encode` writes two characters per byte, `upper`,
    /// `lower` and `initcap` can triple a character's bytes (`upper('ΐ')`), and `translate` can
    /// map a one-byte character to a four-byte one; `translate(upper(s), 'ʼN', 'ŉŉ')` doubles
    /// `s = 'ŉ...'` each round.
    fn weight(&self, e: &Expr, parts: &[Lineage]) -> Result<u64, Rejection> {
        let sum = || parts.iter().fold(0u64, |w, l| w.saturating_add(l.weight));
        let largest = || parts.iter().map(|l| l.weight).max().unwrap_or(0);
        if concatenates(e) {
            return Ok(sum());
        }
        let Expr::ScalarFunction(f) = e else { return Ok(largest()) };
        let name = f.func.name();
        let first = parts.first().map_or(0, |l| l.weight);
        Ok(match (name, f.args.as_slice()) {
            ("concat_ws", [_, values @ ..]) => {
                let gaps = values.len().saturating_sub(1) as u64;
                first.saturating_mul(gaps).saturating_add(sum().saturating_sub(first))
            }
            ("array_to_string", [_, repeated @ ..]) => {
                let mut bytes = 1;
                for (argument, what) in repeated.iter().zip(["delimiter", "null string"]) {
                    bytes = bytes.max(self.repeated(argument, name, what)?);
                }
                first.saturating_mul(1 + bytes)
            }
            ("array_replace_all" | "array_replace_n", [_, _, replacement, ..]) => {
                let bytes = self.repeated(replacement, name, "replacement")?.max(1);
                first.saturating_mul(1 + bytes)
            }
            ("encode", _) => first.saturating_mul(2),
            ("upper" | "lower" | "initcap", _) => first.saturating_mul(3),
            ("translate", _) => first.saturating_mul(4),
            _ => largest(),
        })
    }

    /// A list turned into text, by a cast or by a text function that coerces its argument
    /// (`concat(list, '')`, `length(list)`), becomes `[a, b, c]`: a separator and brackets
    /// repeated once per element, as many times as the data decides, with no literal to weigh
    /// (`string_to_array(s, NULL)` makes a list of the characters of any string, so the two in
    /// turn triple a value each round). Lists are joined into text only by `array_to_string`,
    /// which is weighed. Functions whose text does not depend on the elements are let through.
    fn no_list_as_text(&self, e: &Expr, scope: &Scope<'_>) -> Result<(), Rejection> {
        let (function, inputs): (&str, Vec<&Expr>) = match e {
            Expr::Cast(c) => ("cast", vec![&c.expr]),
            Expr::TryCast(c) => ("try_cast", vec![&c.expr]),
            Expr::ScalarFunction(f) if !matches!(f.func.name(), "array_to_string" | "arrow_typeof") => {
                (f.func.name(), f.args.iter().collect())
            }
            _ => return Ok(()),
        };
        let schema = scope.schema();
        let type_of =
            |e: &Expr| e.get_type(schema.as_ref()).map_err(|_| self.internal("an expression of unknown type"));
        let mut nested = false;
        for input in inputs {
            nested |= type_of(input)?.is_nested();
        }
        if nested && matches!(type_of(e)?, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) {
            return Err(self.reject(Reason::ListAsText(function.to_owned())));
        }
        Ok(())
    }

    /// An argument that a function repeats as many times as the data decides must be a literal,
    /// so that its size is bounded by the SQL text's. Returns its length in bytes.
    fn repeated(&self, argument: &Expr, function: &str, what: &'static str) -> Result<u64, Rejection> {
        literal_length(argument)
            .ok_or_else(|| self.reject(Reason::Repeating { function: function.to_owned(), argument: what }))
    }

    /// The lineage of a subquery's result column. What it returns counts as one value per outer
    /// row, except `compare_only` values: those stay values of the subquery's rows, so comparing
    /// them with the outer row is a comparison across rows.
    ///
    /// A result that is `used` (a scalar subquery's value, the set of IN or ANY/ALL) is a use like
    /// the query's own result: one row's raw restricted value must not come out of it.
    fn subquery(&mut self, s: &Subquery, scope: &Scope<'_>, used: bool) -> Result<Lineage, Rejection> {
        self.within.push("subquery".to_owned());
        let lineage = self.plan(&s.subquery, Some(scope))?;
        if used {
            for l in &lineage {
                self.consume(l, &Place::SubqueryResult)?;
            }
        }
        self.within.pop();
        let weight = lineage.iter().map(|l| l.weight).max().unwrap_or(0);
        let items = lineage
            .into_iter()
            .flat_map(|l| l.items)
            .map(|i| if compared(&i) { i } else { Item { origin: Origin::CONSTANT, ..i } });
        Ok(Lineage { items: items.collect(), weight })
    }

    /// The outer columns a subquery is correlated on, at any depth of nesting: its result
    /// depends on them. (`outer_ref_columns` lists only the subquery's own references; one made
    /// by a subquery inside it would be missed.) References to the subquery's own levels do not
    /// resolve here and are skipped.
    fn correlation(&mut self, s: &Subquery, scope: &Scope<'_>) -> Result<Lineage, Rejection> {
        let mut columns = Vec::new();
        let _ = s.subquery.apply_with_subqueries(|node| {
            node.apply_expressions(|e| {
                e.apply(|e| {
                    if let Expr::OuterReferenceColumn(_, c) = e {
                        columns.push(c.clone());
                    }
                    Ok(TreeNodeRecursion::Continue)
                })
            })
        });
        let mut out = Lineage::default();
        for c in columns.iter().chain(s.outer_ref_columns.iter().filter_map(|e| match e {
            Expr::OuterReferenceColumn(_, c) => Some(c),
            _ => None,
        })) {
            if let Some(lineage) = scope.resolve(c).or_else(|| scope.resolve_outer(c)) {
                out.items.extend(lineage.items.iter().cloned().map(|i| Item { correlated: true, exact: false, ..i }));
            }
        }
        Ok(out)
    }

    /// Checks a condition that decides which rows are kept, conjunct by conjunct. Returns the
    /// lineage of the whole condition.
    fn predicate(&mut self, e: &Expr, scope: &Scope<'_>, place: &Place) -> Result<Lineage, Rejection> {
        let mut all = Lineage::default();
        for conjunct in split_conjunction(e) {
            let lineage = self.expr(conjunct, scope)?;
            self.consume(&lineage, place)?;
            self.same_row(&lineage, place)?;
            all.extend(lineage);
        }
        Ok(all)
    }

    /// A `compare_only` value may be compared only with constants and values of its own row: a
    /// comparison with other rows' values (another table's, another scan's, a subquery's set or
    /// an aggregate over other rows) says, through which rows match or how many, what it is. Its
    /// classification too: it is still one row's value, and the rule is the column's.
    fn same_row(&self, lineage: &Lineage, place: &Place) -> Result<(), Rejection> {
        let items: Vec<&Item> = lineage.items.iter().filter(|i| !i.correlated).collect();
        let compared = items.iter().find(|i| compared(i));
        let Some(Item { source: Source::Column { view, column, .. }, origin, .. }) = compared else { return Ok(()) };
        if items.iter().any(|i| i.origin != Origin::CONSTANT && i.origin != *origin) {
            let reason =
                Reason::CrossRowComparison { view: view.clone(), column: column.clone(), place: place.clone() };
            return Err(self.reject(reason));
        }
        Ok(())
    }

    /// Checks that every source of a value may be used at `place`.
    fn consume(&self, lineage: &Lineage, place: &Place) -> Result<(), Rejection> {
        for item in &lineage.items {
            let Source::Column { view, column, constraint } = &item.source else { continue };
            if !allowed(*constraint, item.flow, place) {
                let (view, column, constraint, place) = (view.clone(), column.clone(), *constraint, place.clone());
                let reason = match item.flow {
                    Flow::Classified => Reason::ClassifiedUse { view, column, constraint, place },
                    _ => Reason::Constraint { view, column, constraint, place },
                };
                return Err(self.reject(reason));
            }
        }
        Ok(())
    }

    /// Checks the keys of one grouping (GROUP BY, DISTINCT or DISTINCT ON) as a whole, and
    /// returns what restricts it, if anything: grouped by raw `group_by_only` values or by a
    /// classification of a `group_by_only`, `compare_only` or `aggregate_only` column (a quarter
    /// of founding dates, a band of capital), so that its groups are counted against the
    /// threshold and identifiers may only be counted in it.
    ///
    /// A key may be an identifier itself (`GROUP BY person_id`: one group per person, which the
    /// threshold drops wherever a restricted value is involved), but not a value computed from
    /// one, in any form: `citizen_id = 'x'` next to `education` splits one person off each
    /// group, and the difference between the groups says what that person's education is;
    /// `substr(citizen_id, 1, 3)` or `district || citizen_id` sort people by their identifier.
    /// In a restricted grouping not even the identifier itself may be a key: one group per
    /// identifier and district is a list of who lives where (`array_agg(citizen_id)` per
    /// district is refused for that), and the threshold counts the units of the scans behind
    /// the `group_by_only` keys, not those behind the identifier: keyed by one side of a
    /// self-join (`a.citizen_id, b.district ... ON a.citizen_id >= b.citizen_id`), every group
    /// is large and the differences between neighbouring ones place each person.
    fn keys(&self, keys: &[Lineage], place: &Place) -> Result<Option<RestrictedKeys>, Rejection> {
        let mut restricted = None;
        for item in keys.iter().flat_map(|l| &l.items) {
            let Source::Column { constraint, .. } = &item.source else { continue };
            match (constraint, item.flow) {
                (Constraint::GroupByOnly, Flow::Value | Flow::Classified) => {
                    restricted = Some(RestrictedKeys::GroupByOnly)
                }
                (Constraint::CompareOnly | Constraint::AggregateOnly, Flow::Classified) => {
                    restricted = restricted.or(Some(RestrictedKeys::Classified));
                }
                _ => {}
            }
        }
        for item in keys.iter().flat_map(|l| &l.items) {
            let Source::Column { view, column, constraint: Constraint::Pseudonymized } = &item.source else {
                continue;
            };
            let identifier = format!("{view}.{column}");
            if !item.exact {
                return Err(self.reject(Reason::IdentifierKey { identifier, place: place.clone() }));
            }
            if let Some(keys) = restricted {
                return Err(self.reject(Reason::MemberKey { identifier, place: place.clone(), keys }));
            }
        }
        Ok(restricted)
    }

    /// An aggregate may not reduce raw `aggregate_only` values together with an identifier: `min`
    /// of `person_id || amount` is one person's amount with their pseudonym, and a sum of
    /// `CASE WHEN person_id = ... THEN amount END` is one person's total. Its FILTER counts like
    /// its arguments: `sum(amount) FILTER (WHERE person_id = ...)` is the same total.
    /// An identifier counts in any form: raw, or made a group key or aggregate on the way.
    fn unidentified(&self, arguments: &Lineage, filter: Option<&Lineage>, function: &str) -> Result<(), Rejection> {
        let value = arguments.items.iter().find_map(|i| match &i.source {
            Source::Column { view, column, constraint: Constraint::AggregateOnly } if i.flow == Flow::Value => {
                Some(format!("{view}.{column}"))
            }
            _ => None,
        });
        let Some(value) = value else { return Ok(()) };
        let function = function.to_owned();
        if let Some(identifier) = identifier(arguments) {
            return Err(self.reject(Reason::IdentifiedAggregate { value, identifier, function }));
        }
        if let Some(identifier) = filter.and_then(identifier) {
            return Err(self.reject(Reason::IdentifiedFilter { value, identifier, function }));
        }
        Ok(())
    }

    /// In a grouping by raw `group_by_only` values, an aggregate of identifiers would name the
    /// members of each group (`array_agg(citizen_id)` per district, or `max(CASE WHEN
    /// citizen_id = ... THEN 1 END)`); joining such lists rebuilds each person's values. Only
    /// counting the identifiers themselves is allowed: `count(DISTINCT citizen_id)`. A FILTER
    /// counts like the arguments: `max(1) FILTER (WHERE citizen_id = ...)` marks the group that
    /// person is in, and so does `count(DISTINCT citizen_id) FILTER (WHERE citizen_id = ...)`.
    fn no_members(
        &self,
        a: &datafusion::logical_expr::expr::AggregateFunction,
        arguments: &Lineage,
        filter: Option<&Lineage>,
        function: &str,
        keys: RestrictedKeys,
    ) -> Result<(), Rejection> {
        if let Some(identifier) = filter.and_then(identifier) {
            return Err(self.reject(Reason::GroupMembersFilter { identifier, function: function.to_owned(), keys }));
        }
        let Some(identifier) = identifier(arguments) else { return Ok(()) };
        let counting = matches!(function, "count" | "approx_distinct")
            && a.params.order_by.is_empty()
            && matches!(a.params.args.as_slice(), [Expr::Column(_)]);
        if counting {
            return Ok(());
        }
        Err(self.reject(Reason::GroupMembers { identifier, function: function.to_owned(), keys }))
    }

    fn deterministic(&self, volatility: Volatility, name: &str) -> Result<(), Rejection> {
        match volatility {
            Volatility::Immutable => Ok(()),
            Volatility::Stable | Volatility::Volatile => Err(self.reject(Reason::Volatile(name.to_owned()))),
        }
    }

    fn internal(&self, what: &'static str) -> Rejection {
        self.reject(Reason::Unsupported(what))
    }
}

/// A `compare_only` value still of one row, raw or classified: compared only within its row.
fn compared(item: &Item) -> bool {
    matches!(item.flow, Flow::Value | Flow::Classified)
        && matches!(item.source, Source::Column { constraint: Constraint::CompareOnly, .. })
}

/// What a `classify` cut asks for that `published` does not publish, if anything.
fn unpublished(cut: &Cut, published: Option<&Classification>) -> Option<Classes> {
    match cut {
        Cut::Grain(grain) if published.is_some_and(|c| c.has_grain(*grain)) => None,
        Cut::Grain(grain) => Some(Classes::Grains(vec![*grain])),
        Cut::Edges(edges) if published.is_some_and(|c| c.admits_edges(edges)) => None,
        Cut::Edges(edges) => {
            let off = edges.iter().filter(|&&e| !published.is_some_and(|c| c.has_edge(e)));
            Some(Classes::Edges(off.map(ToString::to_string).collect()))
        }
    }
}

/// A published classification, for messages.
fn classes(published: &Classification) -> Classes {
    match published {
        Classification::Grains(grains) => Classes::Grains(grains.clone()),
        Classification::Edges(edges) => Classes::Edges(edges.iter().map(ToString::to_string).collect()),
    }
}

/// A pseudonymized column among a value's sources, in any form.
fn identifier(lineage: &Lineage) -> Option<String> {
    lineage.items.iter().find_map(|i| match &i.source {
        Source::Column { view, column, constraint: Constraint::Pseudonymized } => Some(format!("{view}.{column}")),
        _ => None,
    })
}

/// The most stored values or constants one value may be assembled from. Concatenating a value
/// with itself through nested queries doubles it each level (`concat(s, s)` 34 times is 2^34
/// times the input); other expressions are no larger than their largest part, so a value stays
/// within this many times the largest input.
const MAX_VALUE_WEIGHT: u64 = 256;

/// The length in bytes of a literal argument (under aliases and casts), or `None` for anything
/// else. A literal's size is bounded by the SQL text's.
fn literal_length(e: &Expr) -> Option<u64> {
    match e {
        Expr::Literal(value, _) => Some(match value {
            ScalarValue::Utf8(s) | ScalarValue::LargeUtf8(s) | ScalarValue::Utf8View(s) => {
                s.as_ref().map_or(0, |s| s.len() as u64)
            }
            other => other.to_string().len() as u64,
        }),
        Expr::Alias(a) => literal_length(&a.expr),
        Expr::Cast(c) => literal_length(&c.expr),
        Expr::TryCast(c) => literal_length(&c.expr),
        _ => None,
    }
}

/// Whether an expression's value holds all of its parts (rather than one of them, or a number).
/// (`concat_ws` and the functions that repeat an argument are weighed in `Checker::weight`.)
fn concatenates(e: &Expr) -> bool {
    match e {
        Expr::BinaryExpr(b) => b.op == datafusion::logical_expr::Operator::StringConcat,
        Expr::ScalarFunction(f) => matches!(
            f.func.name(),
            "concat"
                | "make_array"
                | "array_concat"
                | "array_append"
                | "array_prepend"
                | "array_union"
                | "named_struct"
                | "struct"
                | "map"
                | "overlay"
                | "arrays_zip"
                | "array_replace"
        ),
        _ => false,
    }
}

/// Marks a derived relation's values as varying with its own rows.
fn with_rows(mut lineage: Lineage, origin: Origin) -> Lineage {
    lineage.extend(Lineage::rows(origin));
    lineage
}

/// The constraint table of DESIGN.md section 4, for one source in one form at one place.
fn allowed(constraint: Constraint, flow: Flow, place: &Place) -> bool {
    match (constraint, flow) {
        (Constraint::Plaintext | Constraint::Pseudonymized, _) => true,
        (Constraint::Forbidden, _) => false,
        // Once grouped or aggregated, a value is a released statistic of many rows.
        (_, Flow::GroupKey | Flow::Aggregated) => true,
        // A classification of a group_by_only column is a band of it: grouped, as the column is.
        // (Compared, a band of any width would filter on the raw value row by row.)
        (Constraint::GroupByOnly, Flow::Value | Flow::Classified) => place.is_grouping(),
        // A published period or band of a restricted value: what the bureau's own tables group
        // and filter by.
        (Constraint::AggregateOnly | Constraint::CompareOnly, Flow::Classified) => {
            place.is_grouping() || place.is_predicate()
        }
        (Constraint::AggregateOnly, Flow::Value) => {
            matches!(place, Place::Aggregate(name) if REDUCING_AGGREGATES.contains(&name.as_str()))
        }
        (Constraint::CompareOnly, Flow::Value) => place.is_predicate(),
    }
}
