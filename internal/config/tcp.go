package config

// validateTCP checks what only a tcp app has: its own listen addresses.
func (a *App) validateTCP(key string, bad func(key, format string, args ...any)) {
	if a.Kind == KindTCP {
		bad(key+".kind", "tcp apps are not served yet (issue 12)")
	}
	if a.Kind != KindTCP && len(a.Listen) > 0 {
		bad(key+".listen", "only a tcp app has its own listen addresses (HTTP apps share the gateway's)")
	}
}
