module github.com/hanzoai/hanzo-node/examples/go/echo

go 1.24

require github.com/hanzoai/hanzo-node/hanzo-sdk/go v0.0.0

// The SDK from this checkout: no module proxy is needed to build.
replace github.com/hanzoai/hanzo-node/hanzo-sdk/go => ../../../hanzo-sdk/go
