// Package dbproxy is the database endpoint: a port handoff fronts for a
// Postgres or MySQL/MariaDB server. The app connects to the endpoint, the
// endpoint to the current primary. It reads just enough of each wire
// protocol to know where a connection's transactions begin and end
// (Postgres: ReadyForQuery's status byte; MySQL: the server-status flags of
// OK and EOF packets), so that it can
//
//   - hold every connection's next transaction (Pause) and say when no
//     transaction is open on the server any more;
//   - point at another server (Repoint): each session moves to it at its
//     next transaction boundary — a new server session opened with the
//     client's own startup parameters and the endpoint's credentials, the
//     session state the endpoint can see applied again, the client's named
//     prepared statements prepared again — never inside a transaction;
//   - release what it held (Resume).
//
// docs/databases.md says what the endpoint sees, what it moves and what it
// cannot.
package dbproxy
