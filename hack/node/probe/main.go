// probe checks, from inside a pod, what a workload on the node relies on: that the
// cluster DNS resolves the API server's Service name, and that the API server answers
// a call made with the pod's ServiceAccount token, found the way in-cluster clients
// find it (KUBERNETES_SERVICE_HOST/PORT and the token, CA and namespace files that
// client-go's rest.InClusterConfig reads). It prints one JSON line with what it found,
// then serves GET /healthz on :8080: 200 once every check passed, 503 until then.
// Standard library only, so the test image is one static binary.
package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

const saDir = "/var/run/secrets/kubernetes.io/serviceaccount"

type result struct {
	ServiceHost string `json:"serviceHost"`
	Resolved    string `json:"resolved"`
	Username    string `json:"username"`
	Namespace   string `json:"namespace"`
	Error       string `json:"error,omitempty"`
}

func check() (result, error) {
	var r result
	r.ServiceHost = os.Getenv("KUBERNETES_SERVICE_HOST")
	port := os.Getenv("KUBERNETES_SERVICE_PORT")
	if r.ServiceHost == "" || port == "" {
		return r, fmt.Errorf("KUBERNETES_SERVICE_HOST/PORT are not set")
	}
	addrs, err := net.LookupHost("kubernetes.default.svc")
	if err != nil {
		return r, fmt.Errorf("resolving kubernetes.default.svc: %w", err)
	}
	r.Resolved = strings.Join(addrs, ",")
	if len(addrs) != 1 || addrs[0] != r.ServiceHost {
		return r, fmt.Errorf("kubernetes.default.svc is %v, not the Service IP %s", addrs, r.ServiceHost)
	}
	token, err := os.ReadFile(saDir + "/token")
	if err != nil {
		return r, err
	}
	ns, err := os.ReadFile(saDir + "/namespace")
	if err != nil {
		return r, err
	}
	r.Namespace = string(ns)
	caPEM, err := os.ReadFile(saDir + "/ca.crt")
	if err != nil {
		return r, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return r, fmt.Errorf("no certificate in %s/ca.crt", saDir)
	}
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	// Both the Service IP (what in-cluster config dials) and the Service's DNS name
	// must match the API server's certificate.
	for _, host := range []string{net.JoinHostPort(r.ServiceHost, port), "kubernetes.default.svc:" + port} {
		body := []byte(`{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`)
		req, err := http.NewRequest(http.MethodPost,
			"https://"+host+"/apis/authentication.k8s.io/v1/selfsubjectreviews", bytes.NewReader(body))
		if err != nil {
			return r, err
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return r, fmt.Errorf("calling the API server at %s: %w", host, err)
		}
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
			return r, fmt.Errorf("the API server at %s answered %d: %s", host, resp.StatusCode, data)
		}
		var review struct {
			Status struct {
				UserInfo struct {
					Username string `json:"username"`
				} `json:"userInfo"`
			} `json:"status"`
		}
		if err := json.Unmarshal(data, &review); err != nil {
			return r, err
		}
		r.Username = review.Status.UserInfo.Username
	}
	return r, nil
}

func main() {
	var ok atomic.Bool
	go func() {
		for {
			r, err := check()
			if err != nil {
				r.Error = err.Error()
			}
			line, _ := json.Marshal(r)
			fmt.Println(string(line))
			if err == nil {
				ok.Store(true)
				return
			}
			time.Sleep(2 * time.Second)
		}
	}()
	http.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if ok.Load() {
			io.WriteString(w, "ok\n")
			return
		}
		http.Error(w, "checks have not passed yet", http.StatusServiceUnavailable)
	})
	if err := http.ListenAndServe(":8080", nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
