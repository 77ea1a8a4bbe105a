module featurekube.dev/hack/node/probe

go 1.26.0
