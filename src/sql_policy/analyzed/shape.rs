//! The shape of a statement as a whole: a filter is a condition on one table's rows, and
//! only SELECT (with nothing data-modifying inside) is ever accepted.

use super::super::catalog::{cells, owned};
use super::super::Refusal;
use super::Walk;
use pgrx::pg_sys::{self, NodeTag};

impl Walk<'_> {
    /// The filter's statement is `SELECT 1 FROM <table> WHERE <filter>` and nothing else,
    /// so the filter is a condition on that table's rows alone.
    ///
    /// # Safety
    /// `query` is a valid analyzed Query.
    pub(super) unsafe fn filter_shape(&self, query: *mut pg_sys::Query) -> Result<(), Refusal> {
        // SAFETY: the caller's promise; lists hold what parsenodes.h says.
        unsafe {
            let q = &*query;
            let target_is_constant = match cells(q.targetList) {
                [one] => {
                    let expr = (*one.ptr_value.cast::<pg_sys::TargetEntry>()).expr;
                    !expr.is_null() && (*expr.cast::<pg_sys::Node>()).type_ == NodeTag::T_Const
                }
                _ => false,
            };
            let one_relation = match cells(q.rtable) {
                [one] => {
                    (*one.ptr_value.cast::<pg_sys::RangeTblEntry>()).rtekind
                        == pg_sys::RTEKind::RTE_RELATION
                }
                _ => false,
            };
            let plain = q.commandType == pg_sys::CmdType::CMD_SELECT
                && target_is_constant
                && one_relation
                && !q.jointree.is_null()
                && cells((*q.jointree).fromlist).len() == 1
                && [
                    q.groupClause,
                    q.groupingSets,
                    q.sortClause,
                    q.distinctClause,
                    q.windowClause,
                    q.cteList,
                ]
                .iter()
                .all(|list| list.is_null())
                && [q.havingQual, q.limitCount, q.limitOffset, q.setOperations]
                    .iter()
                    .all(|node| node.is_null())
                && !(q.hasAggs || q.hasWindowFuncs || q.hasTargetSRFs);
            if plain {
                Ok(())
            } else {
                self.objects
                    .refuse("anything but a condition on the collection's rows")
            }
        }
    }

    /// # Safety
    /// `node` is a raw statement or a Query.
    pub(super) unsafe fn not_select(&self, node: *mut pg_sys::Node) -> Refusal {
        // SAFETY: the caller's promise; CreateCommandName only reads the node's kind.
        let kind = unsafe { owned(pg_sys::CreateCommandName(node)) };
        Refusal::object(format!(
            "only SELECT is allowed in a {}, not {kind}",
            self.objects.policy.surface
        ))
    }

    pub(super) fn modifying(&self) -> Refusal {
        Refusal::object(format!(
            "data-modifying statements are not allowed in a {}, not even inside WITH",
            self.objects.policy.surface
        ))
    }
}
