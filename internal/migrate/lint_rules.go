package migrate

import (
	"fmt"
	"regexp"
	"strings"
)

// rule is one lint check on one parsed statement: one concept, with the
// message and the safe form it prints. check returns "" when the statement
// is fine. Each rule has a row in docs/migrations.md's lint table.
type rule struct {
	id       string
	postgres bool // Postgres only: its lock or its safe form (CONCURRENTLY, NOT VALID) is Postgres's
	check    func(n node, c *lintContext) (msg, safe string)
}

// rules, in the order their findings are reported for one statement.
var rules = []rule{
	// Indexes.
	{"create-index", true, checkCreateIndex},
	{"drop-index", true, checkDropIndex},
	{"reindex", true, checkReindex},
	// New columns.
	{"add-column-not-null", false, checkAddColumnNotNull},
	{"volatile-default", false, checkVolatileDefault},
	{"add-column-identity", true, checkAddColumnIdentity},
	{"add-column-generated", true, checkAddColumnGenerated},
	{"add-column-references", true, checkAddColumnReferences},
	{"add-column-check", true, checkAddColumnCheck},
	{"json-column", true, checkJSONColumn},
	// Changes to existing columns.
	{"column-type", true, checkColumnType},
	{"set-not-null", true, checkSetNotNull},
	// Constraints.
	{"add-constraint", true, checkAddConstraint},
	{"add-primary-key", true, checkAddPrimaryKey},
	{"add-unique", true, checkAddUnique},
	{"add-exclude", true, checkAddExclude},
	// Statements that lock or rewrite a whole table.
	{"whole-table-update", false, checkWholeTableUpdate},
	{"truncate", true, checkTruncate},
	{"vacuum-full", true, checkVacuumFull},
	{"cluster", true, checkCluster},
	{"lock-table", true, checkLockTable},
	{"refresh-materialized-view", true, checkRefreshMatView},
	{"set-logged", true, checkSetLogged},
	// Phase rules: what breaks the release that is still running.
	{"drop-in-expand", false, checkDropInExpand},
	{"rename-column", false, checkRenameColumn},
	{"rename-table", false, checkRenameTable},
}

// ruleSyntax is the finding for a statement Postgres's grammar rejects.
const ruleSyntax = "syntax"

func ruleIDs() []string {
	ids := make([]string, 0, len(rules)+1)
	for _, r := range rules {
		ids = append(ids, r.id)
	}
	return append(ids, ruleSyntax)
}

// alterTable returns an ALTER TABLE's table and its commands; "" when n is
// not one, or when its table was created earlier in this phase (new and
// empty: nothing to lock out).
func (c *lintContext) alterTable(n node) (string, []obj) {
	if n.kind != "AlterTableStmt" || str(n.o, "objtype") != "OBJECT_TABLE" {
		return "", nil
	}
	t := relName(field(n.o, "relation"))
	if c.created[t] {
		return "", nil
	}
	var cmds []obj
	for _, cmd := range nodes(n.o, "cmds") {
		if cmd.kind == "AlterTableCmd" {
			cmds = append(cmds, cmd.o)
		}
	}
	return t, cmds
}

// addedColumns returns the column definitions of an ALTER TABLE's ADD
// COLUMN commands on an existing table.
func (c *lintContext) addedColumns(n node) (string, []obj) {
	t, cmds := c.alterTable(n)
	var cols []obj
	for _, cmd := range cmds {
		if str(cmd, "subtype") == "AT_AddColumn" {
			if d := wrapped(cmd["def"]); d.kind == "ColumnDef" {
				cols = append(cols, d.o)
			}
		}
	}
	return t, cols
}

// addedConstraints returns the constraints of ALTER TABLE … ADD CONSTRAINT.
func (c *lintContext) addedConstraints(n node) (string, []obj) {
	t, cmds := c.alterTable(n)
	var cons []obj
	for _, cmd := range cmds {
		if str(cmd, "subtype") == "AT_AddConstraint" {
			if d := wrapped(cmd["def"]); d.kind == "Constraint" {
				cons = append(cons, d.o)
			}
		}
	}
	return t, cons
}

// columnConstraint returns the first constraint of a column definition of
// the given type (CONSTR_DEFAULT, CONSTR_NOTNULL …), or nil.
func columnConstraint(col obj, contype string) obj {
	for _, k := range nodes(col, "constraints") {
		if k.kind == "Constraint" && str(k.o, "contype") == contype {
			return k.o
		}
	}
	return nil
}

// --- indexes ---

var reIndexWord = regexp.MustCompile(`(?i)^(\s*create\s+(?:unique\s+)?)index`)

func checkCreateIndex(n node, c *lintContext) (string, string) {
	if n.kind != "IndexStmt" || flag(n.o, "concurrent") {
		return "", ""
	}
	t := relName(field(n.o, "relation"))
	if c.created[t] {
		return "", ""
	}
	return "CREATE INDEX without CONCURRENTLY blocks every write to " + t + " while the index builds",
		reIndexWord.ReplaceAllString(c.text, "${1}INDEX CONCURRENTLY") + ";\n-- handoff runs it outside a transaction and drops a failed (INVALID) build before retrying"
}

func checkDropIndex(n node, c *lintContext) (string, string) {
	if n.kind != "DropStmt" || str(n.o, "removeType") != "OBJECT_INDEX" || flag(n.o, "concurrent") {
		return "", ""
	}
	var idx []string
	for _, o := range nodes(n.o, "objects") {
		idx = append(idx, names(o.o, "items"))
	}
	return "DROP INDEX without CONCURRENTLY takes an ACCESS EXCLUSIVE lock on the index's table: reads and writes queue behind it",
		"DROP INDEX CONCURRENTLY IF EXISTS " + strings.Join(idx, ", ") + ";  -- one index per statement; handoff runs it outside a transaction"
}

func checkReindex(n node, c *lintContext) (string, string) {
	if n.kind != "ReindexStmt" || hasOption(n.o, "params", "concurrently") {
		return "", ""
	}
	kind := strings.TrimPrefix(str(n.o, "kind"), "REINDEX_OBJECT_")
	name := relName(field(n.o, "relation"))
	if name == "" {
		name = str(n.o, "name")
	}
	return "REINDEX without CONCURRENTLY blocks writes to the table (and, for REINDEX INDEX, reads that would use the index) until it finishes",
		fmt.Sprintf("REINDEX %s CONCURRENTLY %s;  -- handoff runs it outside a transaction", kind, name)
}

// --- new columns ---

func checkAddColumnNotNull(n node, c *lintContext) (string, string) {
	t, cols := c.addedColumns(n)
	for _, col := range cols {
		notNull := flag(col, "is_not_null") || columnConstraint(col, "CONSTR_NOTNULL") != nil
		if !notNull || columnConstraint(col, "CONSTR_DEFAULT") != nil || columnConstraint(col, "CONSTR_IDENTITY") != nil ||
			columnConstraint(col, "CONSTR_GENERATED") != nil || serial(col) {
			continue
		}
		name := str(col, "colname")
		return "ADD COLUMN " + name + " … NOT NULL without a DEFAULT fails on a table that has rows, and the release still running does not write " + name,
			fmt.Sprintf("-- handoff:expand\nALTER TABLE %[1]s ADD COLUMN %[2]s <type>;  -- nullable (or NOT NULL DEFAULT <constant>: instant)\n-- handoff:backfill table=%[1]s key=id\nUPDATE %[1]s SET %[2]s = <expr> WHERE id >= :lo AND id < :hi AND %[2]s IS NULL;\n-- handoff:contract\nALTER TABLE %[1]s ADD CONSTRAINT %[1]s_%[2]s_not_null CHECK (%[2]s IS NOT NULL) NOT VALID;\nALTER TABLE %[1]s VALIDATE CONSTRAINT %[1]s_%[2]s_not_null;\nALTER TABLE %[1]s ALTER COLUMN %[2]s SET NOT NULL;", t, name)
	}
	return "", ""
}

// volatile are functions whose value differs per row: as a column's
// default they make ADD COLUMN rewrite the table.
var volatile = map[string]bool{
	"random": true, "clock_timestamp": true, "gen_random_uuid": true, "uuid_generate_v1": true,
	"uuid_generate_v1mc": true, "uuid_generate_v4": true, "uuidv4": true, "uuidv7": true, "nextval": true,
	"timeofday": true, "txid_current": true, "random_normal": true,
}

func serial(col obj) bool {
	switch typeName(field(col, "typeName")) {
	case "serial", "serial4", "bigserial", "serial8", "smallserial", "serial2":
		return true
	}
	return false
}

func checkVolatileDefault(n node, c *lintContext) (string, string) {
	t, cols := c.addedColumns(n)
	for _, col := range cols {
		bad := serial(col)
		if d := columnConstraint(col, "CONSTR_DEFAULT"); d != nil {
			walk(d["raw_expr"], func(f node) {
				if f.kind == "FuncCall" {
					fn := nodes(f.o, "funcname")
					if len(fn) > 0 && volatile[str(fn[len(fn)-1].o, "sval")] {
						bad = true
					}
				}
			})
		}
		if bad {
			return "ADD COLUMN with a volatile default (or a serial) rewrites all of " + t + " under an ACCESS EXCLUSIVE lock",
				fmt.Sprintf("ALTER TABLE %[1]s ADD COLUMN %[2]s <type>;             -- no default: instant\nALTER TABLE %[1]s ALTER COLUMN %[2]s SET DEFAULT <expr>;  -- for new rows\n-- then fill old rows in a backfill phase with :lo/:hi", t, str(col, "colname"))
		}
	}
	return "", ""
}

func checkAddColumnIdentity(n node, c *lintContext) (string, string) {
	t, cols := c.addedColumns(n)
	for _, col := range cols {
		if columnConstraint(col, "CONSTR_IDENTITY") != nil {
			name := str(col, "colname")
			return "ADD COLUMN … GENERATED AS IDENTITY fills every existing row: it rewrites all of " + t + " under an ACCESS EXCLUSIVE lock",
				fmt.Sprintf("ALTER TABLE %[1]s ADD COLUMN %[2]s bigint;  -- instant\n-- backfill %[2]s from a sequence in a backfill phase, then in contract:\nALTER TABLE %[1]s ALTER COLUMN %[2]s ADD GENERATED BY DEFAULT AS IDENTITY;  -- after SET NOT NULL (see set-not-null); set the sequence past max(%[2]s)", t, name)
		}
	}
	return "", ""
}

func checkAddColumnGenerated(n node, c *lintContext) (string, string) {
	t, cols := c.addedColumns(n)
	for _, col := range cols {
		if columnConstraint(col, "CONSTR_GENERATED") != nil {
			name := str(col, "colname")
			return "ADD COLUMN … GENERATED ALWAYS AS (…) STORED computes every existing row: it rewrites all of " + t + " under an ACCESS EXCLUSIVE lock",
				fmt.Sprintf("ALTER TABLE %[1]s ADD COLUMN %[2]s <type>;  -- a plain column, filled by a trigger (or the new release) for new rows\n-- and by a backfill phase for old rows; or compute it in a view or the query", t, name)
		}
	}
	return "", ""
}

func checkAddColumnReferences(n node, c *lintContext) (string, string) {
	t, cols := c.addedColumns(n)
	for _, col := range cols {
		if fk := columnConstraint(col, "CONSTR_FOREIGN"); fk != nil {
			name := str(col, "colname")
			ref := relName(field(fk, "pktable"))
			if cols := nodes(fk, "pk_attrs"); len(cols) > 0 {
				var cs []string
				for _, c := range cols {
					cs = append(cs, str(c.o, "sval"))
				}
				ref += " (" + strings.Join(cs, ", ") + ")"
			}
			return "ADD COLUMN … REFERENCES validates the new foreign key at once, locking " + t + " and " + ref + " against writes",
				fmt.Sprintf("ALTER TABLE %[1]s ADD COLUMN %[2]s <type>;\nALTER TABLE %[1]s ADD CONSTRAINT %[1]s_%[2]s_fkey FOREIGN KEY (%[2]s) REFERENCES %[3]s NOT VALID;\nALTER TABLE %[1]s VALIDATE CONSTRAINT %[1]s_%[2]s_fkey;  -- without blocking writes", t, name, ref)
		}
	}
	return "", ""
}

func checkAddColumnCheck(n node, c *lintContext) (string, string) {
	t, cols := c.addedColumns(n)
	for _, col := range cols {
		if columnConstraint(col, "CONSTR_CHECK") != nil {
			name := str(col, "colname")
			return "ADD COLUMN … CHECK validates the constraint at once: a scan of " + t + " under an ACCESS EXCLUSIVE lock",
				fmt.Sprintf("ALTER TABLE %[1]s ADD COLUMN %[2]s <type>;\nALTER TABLE %[1]s ADD CONSTRAINT %[1]s_%[2]s_check CHECK (<expr>) NOT VALID;\nALTER TABLE %[1]s VALIDATE CONSTRAINT %[1]s_%[2]s_check;  -- without blocking writes", t, name)
		}
	}
	return "", ""
}

func checkJSONColumn(n node, c *lintContext) (string, string) {
	t, cols := c.addedColumns(n)
	for _, col := range cols {
		if typeName(field(col, "typeName")) == "json" {
			name := str(col, "colname")
			return "a json column has no equality operator: SELECT DISTINCT, UNION and GROUP BY over " + t + "'s rows fail once it exists",
				fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s jsonb;", t, name)
		}
	}
	return "", ""
}

// --- existing columns ---

// widening are the target types of ALTER COLUMN TYPE that the lint takes
// to be a binary-compatible widening (varchar(n) to varchar(m ≥ n), to
// varchar or to text; numeric(p,s) to numeric): Postgres changes the
// catalog only. The parser does not know the column's old type, so the
// lint trusts the author here; a USING clause always means a rewrite.
var widening = map[string]bool{"text": true, "varchar": true, "citext": true}

func checkColumnType(n node, c *lintContext) (string, string) {
	t, cmds := c.alterTable(n)
	for _, cmd := range cmds {
		if str(cmd, "subtype") != "AT_AlterColumnType" {
			continue
		}
		def := wrapped(cmd["def"]).o
		tn := field(def, "typeName")
		base := typeName(tn)
		if def["raw_default"] == nil && (widening[base] || base == "numeric" && len(nodes(tn, "typmods")) == 0) {
			continue
		}
		col := str(cmd, "name")
		newType := base
		if m := nodes(tn, "typmods"); len(m) > 0 {
			var mods []string
			for _, v := range m {
				mods = append(mods, fmt.Sprint(num(field(v.o, "ival"), "ival")))
			}
			newType += "(" + strings.Join(mods, ",") + ")"
		}
		return "changing the type of " + t + "." + col + " rewrites the table under an ACCESS EXCLUSIVE lock (only widening a varchar, varchar to text, or dropping numeric's precision are free)",
			fmt.Sprintf("-- handoff:expand\nALTER TABLE %[1]s ADD COLUMN %[2]s_new %[3]s;\n-- handoff:backfill table=%[1]s key=id\nUPDATE %[1]s SET %[2]s_new = %[2]s::%[3]s WHERE id >= :lo AND id < :hi;\n-- handoff:contract\nALTER TABLE %[1]s DROP COLUMN %[2]s;  -- once the new release reads %[2]s_new", t, col, newType)
	}
	return "", ""
}

func checkSetNotNull(n node, c *lintContext) (string, string) {
	t, cmds := c.alterTable(n)
	if c.validated[t] {
		return "", ""
	}
	for _, cmd := range cmds {
		if str(cmd, "subtype") != "AT_SetNotNull" {
			continue
		}
		col := str(cmd, "name")
		name := t + "_" + col + "_not_null"
		return "SET NOT NULL scans all of " + t + " under an ACCESS EXCLUSIVE lock",
			fmt.Sprintf("ALTER TABLE %[1]s ADD CONSTRAINT %[3]s CHECK (%[2]s IS NOT NULL) NOT VALID;\nALTER TABLE %[1]s VALIDATE CONSTRAINT %[3]s;\nALTER TABLE %[1]s ALTER COLUMN %[2]s SET NOT NULL;  -- uses the validated CHECK, no scan\nALTER TABLE %[1]s DROP CONSTRAINT %[3]s;", t, col, name)
	}
	return "", ""
}

// --- constraints ---

func checkAddConstraint(n node, c *lintContext) (string, string) {
	t, cons := c.addedConstraints(n)
	for _, k := range cons {
		switch str(k, "contype") {
		case "CONSTR_CHECK", "CONSTR_FOREIGN":
		default:
			continue
		}
		if flag(k, "skip_validation") {
			continue
		}
		name := str(k, "conname")
		if name == "" {
			name = "<name>"
		}
		return "adding a CHECK or FOREIGN KEY constraint scans " + t + " while holding a lock that blocks writes",
			fmt.Sprintf("%s NOT VALID;\nALTER TABLE %s VALIDATE CONSTRAINT %s;  -- scans without blocking writes", strings.TrimSpace(c.text), t, name)
	}
	return "", ""
}

// indexConstraint returns the first constraint of the type, added to an
// existing table without USING INDEX, by ADD CONSTRAINT or inline on an
// added column.
func (c *lintContext) indexConstraint(n node, contype string) (string, obj) {
	t, cons := c.addedConstraints(n)
	_, cols := c.addedColumns(n)
	for _, col := range cols {
		if k := columnConstraint(col, contype); k != nil {
			cons = append(cons, k)
		}
	}
	for _, k := range cons {
		if str(k, "contype") == contype && str(k, "indexname") == "" {
			return t, k
		}
	}
	return "", nil
}

func keys(k obj) string {
	var ks []string
	for _, n := range nodes(k, "keys") {
		ks = append(ks, str(n.o, "sval"))
	}
	if len(ks) == 0 {
		return "<columns>"
	}
	return strings.Join(ks, ", ")
}

func checkAddPrimaryKey(n node, c *lintContext) (string, string) {
	t, k := c.indexConstraint(n, "CONSTR_PRIMARY")
	if k == nil {
		return "", ""
	}
	return "ADD PRIMARY KEY builds its index (and checks NOT NULL) while holding an ACCESS EXCLUSIVE lock on " + t,
		fmt.Sprintf("CREATE UNIQUE INDEX CONCURRENTLY %[1]s_pkey ON %[1]s (%[2]s);\n-- the columns SET NOT NULL the safe way (see set-not-null), then:\nALTER TABLE %[1]s ADD CONSTRAINT %[1]s_pkey PRIMARY KEY USING INDEX %[1]s_pkey;", t, keys(k))
}

func checkAddUnique(n node, c *lintContext) (string, string) {
	t, k := c.indexConstraint(n, "CONSTR_UNIQUE")
	if k == nil {
		return "", ""
	}
	return "ADD UNIQUE builds its index while holding an ACCESS EXCLUSIVE lock on " + t,
		fmt.Sprintf("CREATE UNIQUE INDEX CONCURRENTLY %[1]s_key ON %[1]s (%[2]s);\nALTER TABLE %[1]s ADD CONSTRAINT %[1]s_key UNIQUE USING INDEX %[1]s_key;", t, keys(k))
}

func checkAddExclude(n node, c *lintContext) (string, string) {
	t, k := c.indexConstraint(n, "CONSTR_EXCLUSION")
	if k == nil {
		return "", ""
	}
	return "ADD EXCLUDE builds its index and checks every row while holding an ACCESS EXCLUSIVE lock on " + t + "; Postgres has no concurrent form",
		"create a new table with the constraint, fill it in a backfill phase, and switch the release to it; or accept the lock in a maintenance window (-- handoff:allow add-exclude)"
}

// --- whole-table statements ---

// trivial reports a WHERE clause that is always true (absent, TRUE, 1 = 1).
func trivial(where any) bool {
	w := wrapped(where)
	switch w.kind {
	case "":
		return true
	case "A_Const":
		b := field(w.o, "boolval")
		return b != nil && flag(b, "boolval")
	case "A_Expr":
		if str(w.o, "kind") != "AEXPR_OP" || names(w.o, "name") != "=" {
			return false
		}
		l, r := wrapped(w.o["lexpr"]), wrapped(w.o["rexpr"])
		return l.kind == "A_Const" && r.kind == "A_Const" && fmt.Sprint(withoutLocation(l.o)) == fmt.Sprint(withoutLocation(r.o))
	}
	return false
}

func withoutLocation(o obj) obj {
	out := obj{}
	for k, v := range o {
		if k != "location" {
			out[k] = v
		}
	}
	return out
}

func checkWholeTableUpdate(n node, c *lintContext) (string, string) {
	if c.phase == Backfill {
		return "", ""
	}
	var t, verb string
	walk(n.o, func(d node) {
		if t != "" || d.kind != "UpdateStmt" && d.kind != "DeleteStmt" {
			return
		}
		if name := relName(field(d.o, "relation")); !c.created[name] && trivial(d.o["whereClause"]) {
			t, verb = name, strings.ToUpper(strings.TrimSuffix(d.kind, "Stmt"))
		}
	})
	if n.kind == "UpdateStmt" || n.kind == "DeleteStmt" {
		if name := relName(field(n.o, "relation")); t == "" && !c.created[name] && trivial(n.o["whereClause"]) {
			t, verb = name, strings.ToUpper(strings.TrimSuffix(n.kind, "Stmt"))
		}
	}
	if t == "" {
		return "", ""
	}
	batched := "DELETE FROM " + t + " WHERE id >= :lo AND id < :hi"
	if verb == "UPDATE" {
		batched = "UPDATE " + t + " SET … WHERE id >= :lo AND id < :hi"
	}
	if n.kind == "UpdateStmt" || n.kind == "DeleteStmt" {
		if n.o["whereClause"] != nil {
			batched = strings.TrimSpace(c.text) + " AND id >= :lo AND id < :hi"
		} else {
			batched = strings.TrimSpace(c.text) + " WHERE id >= :lo AND id < :hi"
		}
	}
	return "an " + verb + " of every row of " + t + " (no WHERE, or one that is always true, or only inside a subquery) locks every row it changes until it commits, and live writers wait that long",
		fmt.Sprintf("-- handoff:backfill table=%s key=id\n%s;", t, batched)
}

func checkTruncate(n node, c *lintContext) (string, string) {
	if n.kind != "TruncateStmt" {
		return "", ""
	}
	for _, r := range nodes(n.o, "relations") {
		if t := relName(r.o); !c.created[t] {
			return "TRUNCATE takes an ACCESS EXCLUSIVE lock on " + t + ": reads and writes queue behind it, and the release still running loses its rows",
				"-- handoff:backfill table=" + t + " key=id\nDELETE FROM " + t + " WHERE id >= :lo AND id < :hi;  -- in batches; or DROP the table in contract once nothing reads it"
		}
	}
	return "", ""
}

func checkVacuumFull(n node, c *lintContext) (string, string) {
	if n.kind != "VacuumStmt" || !flag(n.o, "is_vacuumcmd") || !hasOption(n.o, "options", "full") {
		return "", ""
	}
	return "VACUUM FULL rewrites the table under an ACCESS EXCLUSIVE lock: reads and writes queue for the whole rewrite",
		"VACUUM (ANALYZE) <table>;  -- plain VACUUM does not block reads or writes; to shrink a bloated table online use pg_repack or pg_squeeze"
}

func checkCluster(n node, c *lintContext) (string, string) {
	if n.kind != "ClusterStmt" || c.created[relName(field(n.o, "relation"))] {
		return "", ""
	}
	return "CLUSTER rewrites the table under an ACCESS EXCLUSIVE lock: reads and writes queue for the whole rewrite",
		"leave the physical order alone (an index gives the order), or use pg_repack --order-by online"
}

// lockModeShare is the first LOCK TABLE mode (SHARE) that blocks writes.
const lockModeShare = 5

func checkLockTable(n node, c *lintContext) (string, string) {
	if n.kind != "LockStmt" {
		return "", ""
	}
	mode := num(n.o, "mode")
	if mode != 0 && mode < lockModeShare {
		return "", ""
	}
	for _, r := range nodes(n.o, "relations") {
		if t := relName(r.o); !c.created[t] {
			return "LOCK TABLE " + t + " blocks writes (in its default mode, reads too) until the transaction ends",
				"no explicit lock: handoff runs each DDL statement under lock_timeout, retrying, so it waits for nobody and nobody waits for it for long"
		}
	}
	return "", ""
}

func checkRefreshMatView(n node, c *lintContext) (string, string) {
	if n.kind != "RefreshMatViewStmt" || flag(n.o, "concurrent") {
		return "", ""
	}
	v := relName(field(n.o, "relation"))
	if c.created[v] {
		return "", ""
	}
	return "REFRESH MATERIALIZED VIEW without CONCURRENTLY blocks reads of " + v + " until it finishes",
		"REFRESH MATERIALIZED VIEW CONCURRENTLY " + v + ";  -- needs a unique index on the view"
}

func checkSetLogged(n node, c *lintContext) (string, string) {
	t, cmds := c.alterTable(n)
	for _, cmd := range cmds {
		switch str(cmd, "subtype") {
		case "AT_SetLogged", "AT_SetUnLogged":
			return "SET LOGGED / SET UNLOGGED rewrites all of " + t + " under an ACCESS EXCLUSIVE lock",
				"create the table logged (or unlogged) from the start; or copy into a new table in a backfill phase and switch to it"
		}
	}
	return "", ""
}

// --- phase rules ---

func checkDropInExpand(n node, c *lintContext) (string, string) {
	if c.phase != Expand && c.phase != Backfill {
		return "", ""
	}
	what := ""
	if t, cmds := c.alterTable(n); t != "" {
		for _, cmd := range cmds {
			if str(cmd, "subtype") == "AT_DropColumn" {
				what = "column " + t + "." + str(cmd, "name")
				break
			}
		}
	}
	if n.kind == "DropStmt" && str(n.o, "removeType") == "OBJECT_TABLE" {
		for _, o := range nodes(n.o, "objects") {
			if t := names(o.o, "items"); !c.created[strings.TrimPrefix(t, "public.")] {
				what = "table " + t
				break
			}
		}
	}
	if what == "" {
		return "", ""
	}
	return "dropping " + what + " in the " + string(c.phase) + " phase breaks the release still running, which uses it",
		"move the DROP to the contract phase (-- handoff:contract): it runs once no instance of the old release is left"
}

// renameRecipe is the safe form of a rename: the new name is a new object
// that both releases can live with.
const renameRecipe = `-- handoff:expand
ALTER TABLE %[1]s ADD COLUMN %[3]s <type>;            -- add the new one
-- (a trigger, or the new release, writes both while both releases run)
-- handoff:backfill table=%[1]s key=id
UPDATE %[1]s SET %[3]s = %[2]s WHERE id >= :lo AND id < :hi;  -- copy
-- the new release reads %[3]s                          -- switch
-- handoff:contract
ALTER TABLE %[1]s DROP COLUMN %[2]s;                   -- drop the old one`

func checkRenameColumn(n node, c *lintContext) (string, string) {
	if n.kind != "RenameStmt" || str(n.o, "renameType") != "OBJECT_COLUMN" {
		return "", ""
	}
	t := relName(field(n.o, "relation"))
	if c.created[t] {
		return "", ""
	}
	old, neu := str(n.o, "subname"), str(n.o, "newname")
	return "renaming " + t + "." + old + " to " + neu + " breaks the release still running, which reads and writes " + old + " (in any phase: some release always uses the old name)",
		"add, copy, switch, drop:\n" + fmt.Sprintf(renameRecipe, t, old, neu)
}

func checkRenameTable(n node, c *lintContext) (string, string) {
	if n.kind != "RenameStmt" {
		return "", ""
	}
	switch str(n.o, "renameType") {
	case "OBJECT_TABLE", "OBJECT_VIEW", "OBJECT_MATVIEW":
	default:
		return "", ""
	}
	t := relName(field(n.o, "relation"))
	if c.created[t] {
		return "", ""
	}
	neu := str(n.o, "newname")
	return "renaming " + t + " to " + neu + " breaks the release still running, which uses " + t + " (in any phase)",
		fmt.Sprintf("add, copy, switch, drop:\n-- handoff:expand\nCREATE TABLE %[2]s (LIKE %[1]s INCLUDING ALL);  -- add (a trigger on %[1]s, or the new release, writes both)\n-- handoff:backfill table=%[1]s key=id\nINSERT INTO %[2]s SELECT * FROM %[1]s WHERE id >= :lo AND id < :hi ON CONFLICT DO NOTHING;  -- copy\n-- the new release uses %[2]s                                                             -- switch\n-- handoff:contract\nDROP TABLE %[1]s;                                                                       -- drop\n-- (or, for reads only: CREATE VIEW %[1]s AS SELECT * FROM %[2]s after the rename)", t, neu)
}
