package gateway

import "net/url"

type neturl = url.URL
