-- Who placed each order: the name of the API key the intake authenticated (NULL when the
-- intake ran without access control). Later changes name theirs in the history entries
-- (`actor`).
ALTER TABLE order_fsm_orders ADD COLUMN IF NOT EXISTS placed_by_actor text;
