// Command handoff upgrades a live web application — code, schema and data —
// without its users noticing.
package main

import "os"

func main() { os.Exit(run(os.Args[1:])) }
