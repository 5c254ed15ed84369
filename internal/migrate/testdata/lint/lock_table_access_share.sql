-- want: none
-- phase: expand
-- ref: ACCESS SHARE blocks nothing but DROP/ALTER

LOCK TABLE items IN ACCESS SHARE MODE;
