-- want: rename-table
-- phase: contract
-- ref: the running release reads the view by its name

ALTER VIEW item_summary RENAME TO item_overview;
