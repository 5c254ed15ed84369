// Command tcpline is a tcp app's target for the e2e tests: a real process
// that can be killed. It greets each connection with "hello NAME", answers
// each line with "NAME: line", and after the client's half-close says
// "bye NAME" and closes. It listens on --listen, else 127.0.0.1:$PORT (as a
// supervised instance); NAME is --name, else $HANDOFF_RELEASE.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"os"
)

func main() {
	name := flag.String("name", os.Getenv("HANDOFF_RELEASE"), "the name in every answer")
	addr := flag.String("listen", "127.0.0.1:"+os.Getenv("PORT"), "the address to listen on")
	flag.Parse()
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tcpline:", err)
		os.Exit(1)
	}
	for {
		c, err := l.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "tcpline: accept:", err)
			os.Exit(1)
		}
		go serve(c, *name)
	}
}

func serve(c net.Conn, name string) {
	defer c.Close()
	w := bufio.NewWriter(c)
	fmt.Fprintf(w, "hello %s\n", name)
	w.Flush()
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			fmt.Fprintf(w, "bye %s\n", name)
			w.Flush()
			return
		}
		fmt.Fprintf(w, "%s: %s", name, line)
		w.Flush()
	}
}
