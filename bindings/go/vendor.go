package headcount

// Makes "go mod vendor" copy the header's directory (vendor_linux_*.go do
// the same for the static library's).
import _ "github.com/headcount-rs/headcount/bindings/go/build/include"
