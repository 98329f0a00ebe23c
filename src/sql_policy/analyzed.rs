//! [`check`]: PostgreSQL's own parser and parse analysis, then a default-deny walk of the
//! analyzed tree (as pg_ivm checks view definitions), every object judged by OID.
//!
//! Two walks, both with PostgreSQL's walkers:
//!
//! 1. The raw parse tree, before analysis: exactly one SELECT, no data-modifying part, no
//!    FOR UPDATE, no relation qualified with another schema, and every type name resolved
//!    and judged. That keeps parse analysis from taking row or write locks, or locks on
//!    other projects' tables, and from running a caller-made type's input function (a
//!    composite literal runs its domain columns' CHECKs while it is parsed).
//! 2. The analyzed Query tree: statement kind, every relation, function, aggregate,
//!    window function, operator (also those implied by IN, ORDER BY, DISTINCT…), cast,
//!    type (every expression's, every column list's), collation and sublink.
//!
//! Errors parse analysis raises (unknown column, ambiguous function) are PostgreSQL's own
//! and reach the client as such; nothing runs in a subtransaction, and what parse analysis
//! allocates lives in a memory context dropped on return, also when an error unwinds.

use super::catalog::{cells, oids, owned, version, Objects, Scratch};
use super::{Policy, Refusal, RefusalKind};
use pgrx::pg_guard;
use pgrx::pg_sys::{self, NodeTag, Oid};
use std::ffi::{c_void, CStr, CString};

/// Longer statements are refused before PostgreSQL parses them.
const MAX_SQL_BYTES: usize = 1 << 20;

/// The walk's own nesting bound; PostgreSQL's stack check (`max_stack_depth`) usually
/// stops a deep tree earlier, already while parsing or analyzing it.
const MAX_DEPTH: usize = 10_000;

/// Checks that `sql` is one statement PostgreSQL, in the current session's environment
/// (role, `search_path`), reads as something `policy` allows; run it in that same
/// environment. Errors PostgreSQL raises while parsing or analyzing are raised as they
/// are; a refused statement is an `Err`.
pub fn check(sql: &str, policy: &Policy) -> Result<(), Refusal> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(Refusal::limit(format!(
            "the statement is too long ({} bytes; at most {MAX_SQL_BYTES})",
            sql.len()
        )));
    }
    let text =
        CString::new(sql).map_err(|_| Refusal::object("the statement contains a NUL character"))?;
    let mut walk = Walk::new(policy);
    // SAFETY: called from SQL, so on the backend's thread inside a transaction; every
    // tree pointer lives in `_scratch`, which outlives its use here, and PostgreSQL's
    // errors unwind through pgrx's guards as panics that drop `_scratch` on the way.
    unsafe {
        let _scratch = Scratch::enter();
        let raw = single_statement(&text)?;
        walk.walk((*raw).stmt, Phase::Raw)?;
        let query = pg_sys::parse_analyze_fixedparams(
            raw,
            text.as_ptr(),
            std::ptr::null(),
            0,
            std::ptr::null_mut(),
        );
        if policy.filter_shape {
            walk.filter_shape(query)?;
        }
        walk.walk(query.cast(), Phase::Analyzed)
    }
}

/// # Safety
/// Backend thread, inside a transaction.
unsafe fn single_statement(text: &CStr) -> Result<*mut pg_sys::RawStmt, Refusal> {
    // SAFETY: `text` is NUL-terminated; the list and its RawStmts are palloc'd in the
    // current (scratch) context.
    unsafe {
        let statements = pg_sys::raw_parser(text.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT);
        match cells(statements) {
            [one] => Ok(one.ptr_value.cast()),
            [] => Err(Refusal::object("no statement found; expected one SELECT")),
            many => Err(Refusal::object(format!(
                "exactly one statement is allowed, found {}",
                many.len()
            ))),
        }
    }
}

#[derive(Clone, Copy)]
enum Phase {
    Raw,
    Analyzed,
}

/// What to do below a node that passed.
enum Descend {
    No,
    /// Its children, with PostgreSQL's walker for the phase.
    Children,
    /// A Query: its clauses and range table, RTEs and sort/group clauses included.
    Query(*mut pg_sys::Query),
}

const QUERY_WALK_FLAGS: i32 =
    (pg_sys::QTW_EXAMINE_RTES_BEFORE | pg_sys::QTW_EXAMINE_SORTGROUP) as i32;

struct Walk<'p> {
    objects: Objects<'p>,
    refusal: Option<Refusal>,
    depth: usize,
    /// Query nodes entered and not yet left: 0 at the top.
    queries: usize,
}

#[pg_guard]
extern "C-unwind" fn raw_walker(node: *mut pg_sys::Node, walk: *mut c_void) -> bool {
    // SAFETY: `walk` is the Walk that started this walk, alive until it returns.
    unsafe { visit(walk.cast(), node, Phase::Raw) }
}

#[pg_guard]
extern "C-unwind" fn analyzed_walker(node: *mut pg_sys::Node, walk: *mut c_void) -> bool {
    // SAFETY: as in raw_walker.
    unsafe { visit(walk.cast(), node, Phase::Analyzed) }
}

/// Judges `node` and walks below it; true (stop) once something is refused, the refusal
/// kept in the Walk. The Walk is reached through a raw pointer only, since PostgreSQL's
/// walker hands the same pointer back to the callbacks further down.
///
/// # Safety
/// `walk` is valid and `node` is null or a node of the phase's tree.
unsafe fn visit(walk: *mut Walk, node: *mut pg_sys::Node, phase: Phase) -> bool {
    if node.is_null() {
        return false;
    }
    // SAFETY: the caller's promise; each `&mut *walk` ends before the walkers below
    // create their own.
    unsafe {
        pg_sys::check_stack_depth();
        let verdict = {
            let walk = &mut *walk;
            if walk.depth >= MAX_DEPTH {
                Err(Refusal::limit(format!(
                    "the statement is nested too deeply (more than {MAX_DEPTH} levels)"
                )))
            } else {
                match phase {
                    Phase::Raw => walk.raw_node(node),
                    Phase::Analyzed => walk.node(node),
                }
            }
        };
        let descend = match verdict {
            Ok(descend) => descend,
            Err(refusal) => {
                (*walk).refusal = Some(refusal);
                return true;
            }
        };
        (*walk).depth += 1;
        let context: *mut c_void = walk.cast();
        let stop = match (descend, phase) {
            (Descend::No, _) => false,
            (Descend::Children, Phase::Raw) => {
                pg_sys::raw_expression_tree_walker(node, Some(raw_walker), context)
            }
            (Descend::Children, Phase::Analyzed) => {
                pg_sys::expression_tree_walker(node, Some(analyzed_walker), context)
            }
            (Descend::Query(query), _) => {
                (*walk).queries += 1;
                let stop = pg_sys::query_tree_walker(
                    query,
                    Some(analyzed_walker),
                    context,
                    QUERY_WALK_FLAGS,
                );
                (*walk).queries -= 1;
                stop
            }
        };
        (*walk).depth -= 1;
        stop
    }
}

impl<'p> Walk<'p> {
    fn new(policy: &'p Policy) -> Walk<'p> {
        Walk {
            objects: Objects::new(policy),
            refusal: None,
            depth: 0,
            queries: 0,
        }
    }

    /// # Safety
    /// `node` is null or the root of a tree of `phase`.
    unsafe fn walk(&mut self, node: *mut pg_sys::Node, phase: Phase) -> Result<(), Refusal> {
        // SAFETY: the caller's promise; `self` is not used while the walk runs.
        let stopped = unsafe { visit(self, node, phase) };
        match self.refusal.take() {
            Some(refusal) => Err(refusal),
            None if stopped => Err(Refusal::object("the statement could not be checked")),
            None => Ok(()),
        }
    }

    /// # Safety
    /// `node` is a valid raw parse tree node.
    unsafe fn raw_node(&mut self, node: *mut pg_sys::Node) -> Result<Descend, Refusal> {
        // SAFETY: the tag says which struct `node` is.
        unsafe {
            match (*node).type_ {
                NodeTag::T_SelectStmt => {
                    let select = &*node.cast::<pg_sys::SelectStmt>();
                    if !select.lockingClause.is_null() {
                        return self.objects.refuse("FOR UPDATE / FOR SHARE");
                    }
                    if !select.intoClause.is_null() {
                        return self.objects.refuse("SELECT … INTO");
                    }
                }
                NodeTag::T_InsertStmt
                | NodeTag::T_UpdateStmt
                | NodeTag::T_DeleteStmt
                | NodeTag::T_MergeStmt => {
                    if self.depth == 0 {
                        return Err(self.not_select(node));
                    }
                    return Err(self.modifying());
                }
                NodeTag::T_RangeVar => {
                    let range = &*node.cast::<pg_sys::RangeVar>();
                    if !range.schemaname.is_null() || !range.catalogname.is_null() {
                        let schema = owned(range.schemaname);
                        if !range.catalogname.is_null() || schema != self.objects.policy.schema {
                            let relation = format!("{schema}.{}", owned(range.relname));
                            return Err(self.objects.outside(&relation));
                        }
                    }
                }
                // a function or operator named with its schema is found there whatever the
                // search_path, and its argument types may be caller-made: a literal
                // argument is converted to them while the statement is analyzed
                NodeTag::T_FuncCall => {
                    let call = &*node.cast::<pg_sys::FuncCall>();
                    let beacon = !self.objects.policy.beacon_functions.is_empty();
                    self.qualified_name("function", call.funcname, beacon)?;
                }
                NodeTag::T_A_Expr => {
                    self.qualified_name("operator", (*node.cast::<pg_sys::A_Expr>()).name, false)?;
                }
                NodeTag::T_SubLink => {
                    let sublink = &*node.cast::<pg_sys::SubLink>();
                    self.qualified_name("operator", sublink.operName, false)?;
                }
                NodeTag::T_TypeName => {
                    let type_name = node.cast::<pg_sys::TypeName>();
                    let oid = pg_sys::LookupTypeNameOid(std::ptr::null_mut(), type_name, true);
                    // an unknown type is parse analysis's error to raise
                    self.objects.check_type(oid)?;
                    return Ok(Descend::No);
                }
                _ if self.depth == 0 => return Err(self.not_select(node)),
                _ => {}
            }
            Ok(Descend::Children)
        }
    }

    /// Refuses a raw name qualified with a schema other than pg_catalog (or beacon).
    ///
    /// # Safety
    /// `names` is null or a raw name: a List of String nodes.
    unsafe fn qualified_name(
        &self,
        kind: &str,
        names: *mut pg_sys::List,
        beacon: bool,
    ) -> Result<(), Refusal> {
        // SAFETY: the caller's promise.
        let parts: Vec<String> = unsafe {
            cells(names)
                .iter()
                .map(|cell| {
                    let node = cell.ptr_value.cast::<pg_sys::Node>();
                    if (*node).type_ == NodeTag::T_String {
                        owned((*node.cast::<pg_sys::String>()).sval)
                    } else {
                        "?".to_string()
                    }
                })
                .collect()
        };
        match parts.as_slice() {
            [] | [_] => Ok(()),
            [schema, _] if schema == "pg_catalog" || (beacon && schema == "beacon") => Ok(()),
            _ => self.objects.refuse(format!("{kind} {}", parts.join("."))),
        }
    }

    /// # Safety
    /// `node` is a valid node of an analyzed Query tree.
    unsafe fn node(&mut self, node: *mut pg_sys::Node) -> Result<Descend, Refusal> {
        // SAFETY: the tag says which struct `node` is; the lists hold what
        // parsenodes.h/primnodes.h say they hold.
        unsafe {
            let tag = (*node).type_;
            match tag {
                NodeTag::T_Query => return self.query(node.cast()),
                NodeTag::T_RangeTblEntry => return self.range_table_entry(node.cast()),
                NodeTag::T_SortGroupClause => {
                    let clause = &*node.cast::<pg_sys::SortGroupClause>();
                    self.objects.check_operator(clause.eqop, Oid::INVALID)?;
                    self.objects.check_operator(clause.sortop, Oid::INVALID)?;
                    return Ok(Descend::No);
                }
                NodeTag::T_WindowClause => {
                    let window = &*node.cast::<pg_sys::WindowClause>();
                    for function in [window.startInRangeFunc, window.endInRangeFunc] {
                        self.objects
                            .check_support_function(function, &["in_range"])?;
                    }
                    self.objects.check_collation(window.inRangeColl)?;
                }
                NodeTag::T_CommonTableExpr => {
                    let cte = &*node.cast::<pg_sys::CommonTableExpr>();
                    if !cte.search_clause.is_null() || !cte.cycle_clause.is_null() {
                        return self.objects.refuse("WITH … SEARCH / CYCLE");
                    }
                    self.objects.check_types(oids(cte.ctecoltypes))?;
                    self.objects.check_collations(oids(cte.ctecolcollations))?;
                }
                NodeTag::T_SetOperationStmt => {
                    let setop = &*node.cast::<pg_sys::SetOperationStmt>();
                    self.objects.check_types(oids(setop.colTypes))?;
                    self.objects.check_collations(oids(setop.colCollations))?;
                    // not walked by PostgreSQL's walker: the operators of UNION's dedup
                    for clause in cells(setop.groupClauses) {
                        let clause = &*clause.ptr_value.cast::<pg_sys::SortGroupClause>();
                        self.objects.check_operator(clause.eqop, Oid::INVALID)?;
                        self.objects.check_operator(clause.sortop, Oid::INVALID)?;
                    }
                }
                NodeTag::T_RangeTblFunction => {
                    let function = &*node.cast::<pg_sys::RangeTblFunction>();
                    self.objects.check_types(oids(function.funccoltypes))?;
                    self.objects
                        .check_collations(oids(function.funccolcollations))?;
                }
                NodeTag::T_TableSampleClause => {
                    let sample = &*node.cast::<pg_sys::TableSampleClause>();
                    self.objects
                        .check_support_function(sample.tsmhandler, &["bernoulli", "system"])?;
                }
                NodeTag::T_List
                | NodeTag::T_FromExpr
                | NodeTag::T_JoinExpr
                | NodeTag::T_TargetEntry
                | NodeTag::T_RangeTblRef
                | NodeTag::T_CaseWhen => {}
                _ => self.expression(node, tag)?,
            }
            Ok(Descend::Children)
        }
    }

    /// # Safety
    /// `query` is a valid analyzed Query.
    unsafe fn query(&mut self, query: *mut pg_sys::Query) -> Result<Descend, Refusal> {
        // SAFETY: the caller's promise.
        let q = unsafe { &*query };
        if q.commandType != pg_sys::CmdType::CMD_SELECT || !q.utilityStmt.is_null() {
            // SAFETY: CreateCommandName reads a Query's command type.
            return Err(unsafe { self.not_select(query.cast()) });
        }
        if q.hasModifyingCTE {
            return Err(self.modifying());
        }
        if q.hasForUpdate || !q.rowMarks.is_null() {
            return self.objects.refuse("FOR UPDATE / FOR SHARE");
        }
        if q.resultRelation != 0
            || !q.returningList.is_null()
            || !q.onConflict.is_null()
            || !q.mergeActionList.is_null()
            || !q.withCheckOptions.is_null()
        {
            return self.objects.refuse("a data-modifying clause");
        }
        if !self.objects.policy.subqueries {
            if self.queries > 0 {
                return self.objects.refuse("a subquery");
            }
            if !q.cteList.is_null() {
                return self.objects.refuse("WITH");
            }
            if !q.setOperations.is_null() {
                return self.objects.refuse("UNION / INTERSECT / EXCEPT");
            }
        }
        Ok(Descend::Query(query))
    }

    /// # Safety
    /// `rte` is a valid RangeTblEntry.
    unsafe fn range_table_entry(
        &mut self,
        rte: *mut pg_sys::RangeTblEntry,
    ) -> Result<Descend, Refusal> {
        use pg_sys::RTEKind::*;
        // SAFETY: the caller's promise.
        let rte = unsafe { &*rte };
        match rte.rtekind {
            RTE_RELATION => self.objects.check_relation(rte.relid)?,
            RTE_SUBQUERY if !self.objects.policy.subqueries => {
                return self.objects.refuse("a subquery")
            }
            RTE_SUBQUERY | RTE_JOIN | RTE_FUNCTION | RTE_RESULT => {}
            RTE_VALUES | RTE_CTE => {
                // SAFETY: OID lists of the entry's columns.
                unsafe {
                    self.objects.check_types(oids(rte.coltypes))?;
                    self.objects.check_collations(oids(rte.colcollations))?;
                }
            }
            kind if version::is_group_rte(kind) => {}
            _ => {
                return self
                    .objects
                    .refuse("this FROM item (a table function or transition table)")
            }
        }
        // PostgreSQL's range-table walker goes on into the entry's contents itself
        Ok(Descend::No)
    }

    /// # Safety
    /// `node` is a valid node whose tag is `tag`.
    unsafe fn expression(&mut self, node: *mut pg_sys::Node, tag: NodeTag) -> Result<(), Refusal> {
        use NodeTag::*;
        let policy = self.objects.policy;
        // SAFETY: the tag says which struct `node` is; exprType and friends are only
        // called on the expression nodes listed first.
        unsafe {
            match tag {
                T_Var | T_Const | T_Param | T_CaseTestExpr | T_GroupingFunc | T_NamedArgExpr
                | T_BoolExpr | T_FieldSelect | T_RelabelType | T_CoerceViaIO
                | T_ArrayCoerceExpr | T_CollateExpr | T_CaseExpr | T_ArrayExpr | T_RowExpr
                | T_CoalesceExpr | T_MinMaxExpr | T_NullTest | T_BooleanTest | T_Aggref
                | T_WindowFunc | T_SubscriptingRef | T_FuncExpr | T_OpExpr | T_DistinctExpr
                | T_NullIfExpr | T_ScalarArrayOpExpr | T_RowCompareExpr | T_SubLink
                | T_SQLValueFunction | T_CoerceToDomain => {}
                other => {
                    let name = format!("{other:?}");
                    return self.objects.refuse(name.trim_start_matches("T_"));
                }
            }
            // the node's own object first, so that a refusal names the function rather
            // than, say, the void it returns
            match tag {
                // the placeholders PostgreSQL puts in a sublink's test expression
                T_Param
                    if (*node.cast::<pg_sys::Param>()).paramkind
                        != pg_sys::ParamKind::PARAM_SUBLINK =>
                {
                    return self.objects.refuse("a parameter");
                }
                T_Var if !policy.system_columns && (*node.cast::<pg_sys::Var>()).varattno <= 0 => {
                    return Err(Refusal {
                        kind: RefusalKind::Unsupported,
                        message: format!(
                            "a system column or whole-row reference is not supported in a {}",
                            policy.surface
                        ),
                    });
                }
                T_Aggref => {
                    let aggref = &*node.cast::<pg_sys::Aggref>();
                    if !policy.aggregates {
                        return self.objects.refuse("an aggregate");
                    }
                    self.objects.check_function(aggref.aggfnoid)?;
                    self.objects.check_types(oids(aggref.aggargtypes))?;
                }
                T_WindowFunc => {
                    if !policy.window_functions {
                        return self.objects.refuse("a window function");
                    }
                    self.objects
                        .check_function((*node.cast::<pg_sys::WindowFunc>()).winfnoid)?;
                }
                T_SubscriptingRef => {
                    let subscript = &*node.cast::<pg_sys::SubscriptingRef>();
                    if !subscript.refassgnexpr.is_null() {
                        return self.objects.refuse("a subscripted assignment");
                    }
                    self.objects.check_type(subscript.refcontainertype)?;
                    self.objects.check_type(subscript.refelemtype)?;
                }
                T_FuncExpr => self
                    .objects
                    .check_function((*node.cast::<pg_sys::FuncExpr>()).funcid)?,
                // DistinctExpr and NullIfExpr are OpExprs in C
                T_OpExpr | T_DistinctExpr | T_NullIfExpr => {
                    let op = &*node.cast::<pg_sys::OpExpr>();
                    self.objects.check_operator(op.opno, op.opfuncid)?;
                }
                T_ScalarArrayOpExpr => {
                    let op = &*node.cast::<pg_sys::ScalarArrayOpExpr>();
                    self.objects.check_operator(op.opno, op.opfuncid)?;
                }
                T_RowCompareExpr => {
                    let compare = &*node.cast::<pg_sys::RowCompareExpr>();
                    for opno in oids(compare.opnos) {
                        self.objects.check_operator(opno, Oid::INVALID)?;
                    }
                }
                T_SubLink => {
                    use pg_sys::SubLinkType::*;
                    if !policy.subqueries {
                        return self.objects.refuse("a subquery");
                    }
                    match (*node.cast::<pg_sys::SubLink>()).subLinkType {
                        EXISTS_SUBLINK | ALL_SUBLINK | ANY_SUBLINK | ROWCOMPARE_SUBLINK
                        | EXPR_SUBLINK | ARRAY_SUBLINK => {}
                        _ => return self.objects.refuse("this kind of subquery"),
                    }
                }
                T_SQLValueFunction => {
                    let op = (*node.cast::<pg_sys::SQLValueFunction>()).op;
                    // CURRENT_DATE … LOCALTIMESTAMP(n); the rest are the session's names
                    if op > pg_sys::SQLValueFunctionOp::SVFOP_LOCALTIMESTAMP_N {
                        return self
                            .objects
                            .refuse("a session value (CURRENT_USER, CURRENT_SCHEMA, …)");
                    }
                    if !policy.clock {
                        return self
                            .objects
                            .refuse("a clock value (CURRENT_DATE, CURRENT_TIMESTAMP, …)");
                    }
                }
                T_CoerceToDomain => {
                    // refused as its type, which names the domain
                    self.objects.check_type(pg_sys::exprType(node))?;
                    return self.objects.refuse("a domain");
                }
                _ => {}
            }
            self.objects.check_type(pg_sys::exprType(node))?;
            self.objects.check_collation(pg_sys::exprCollation(node))?;
            self.objects
                .check_collation(pg_sys::exprInputCollation(node))
        }
    }
}

mod shape;
